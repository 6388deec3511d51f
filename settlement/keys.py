"""The keys of a deployment: operator, validators, participants and their meters.

Every account that signs has a real secp256k1 key, kept encrypted in the deployment's
keystore folder (``OUT_DIR/settlement/keys/``, never in the repository):

* ``operator.json``, ``grid-operator.json`` and ``validator-<k>.json``: one Ethereum
  V3 keystore file each (scrypt), so each validator process decrypts only its own key;
* ``participants.json``: a V3 keystore of one random 32-byte seed from which every
  participant's and every meter's key is derived (``keccak256(seed, kind, id)``): a
  demonstration stands in for hundreds of wallets and meters without hundreds of
  key files. In a real market each participant's wallet and each meter holds its own
  key; nothing on chain or in the validators depends on how keys were made.

The password comes from the environment variable :data:`PASSWORD_ENV`. Without it, a
new keystore gets a random password written to ``keys/password`` (mode 0600) and a
note says so: fine for a demonstration, not for real money.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import coincurve
from Crypto.Cipher import AES
from Crypto.Protocol.KDF import scrypt
from Crypto.Util import Counter
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from gridmatch.errors import InputError
from gridmatch.settlement.eip712 import CURVE_ORDER
from gridmatch.user_files import RECORD_LIMIT_BYTES, parse_json, read_text

if TYPE_CHECKING:
    # eth-account (~0.5 s to import: eth-keyfile loads py_ecc's BLS curves) is loaded
    # only where a transaction key or a new key file is needed, not in validators.
    from eth_account.signers.local import LocalAccount

PASSWORD_ENV = "GRIDMATCH_KEYSTORE_PASSWORD"
PASSWORD_FILE = "password"
SEED_FILE = "participants.json"
OPERATOR = "operator"
# Certifies which meter key measures which connection, and receives the grid fees.
GRID_OPERATOR = "grid-operator"
# scrypt's cost: ~40 ms per file here, a handful of files per deployment.
SCRYPT_N = 2**14


def validator_name(k: int) -> str:
    """Key name of the ``k``-th validator (1-based)."""
    return f"validator-{k}"


@dataclass(frozen=True)
class DerivedKey:
    """A derived signing key and its address (it signs messages, never transactions).

    Lighter than an eth-account ``LocalAccount`` (a round derives thousands of keys;
    ``Account.from_key`` spent 0.4 s on them for 1,000 trades).
    """

    key: bytes = field(repr=False)
    address: str

    @classmethod
    def of(cls, secret: bytes) -> DerivedKey:
        """Return the key of a 32-byte secret with its checksummed address."""
        public = coincurve.PrivateKey(secret).public_key.format(compressed=False)[1:]
        return cls(secret, to_checksum_address(keccak(public)[12:]))


@dataclass
class Keystore:
    """An open keystore folder; keys are decrypted on first use and kept in memory.

    Attributes
    ----------
    created_password
        True if this keystore was created now with a generated password file.
    """

    folder: Path
    password: str
    created_password: bool = False
    _roles: dict[str, LocalAccount] = field(default_factory=dict)
    _seed: bytes | None = None
    _derived: dict[tuple[str, str], DerivedKey] = field(default_factory=dict)
    creating: bool = False

    @classmethod
    def open(cls, folder: Path, *, create: bool) -> Keystore:
        """Open (or, with ``create``, make) the keystore in ``folder``.

        Raises
        ------
        InputError
            No password (neither :data:`PASSWORD_ENV` nor a password file), or the
            folder is missing and ``create`` is false.
        """
        password = os.environ.get(PASSWORD_ENV)
        password_file = folder / PASSWORD_FILE
        generated = False
        if password is None:
            if password_file.is_file():
                password = read_text(password_file, 1024, "keystore password").strip()
            elif create and not (folder / SEED_FILE).exists():
                folder.mkdir(parents=True, exist_ok=True)
                password = secrets.token_hex(16)
                descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(password + "\n")
                generated = True
            else:
                raise InputError(folder, f"the keystore needs its password: set {PASSWORD_ENV}")
        if not create and not folder.is_dir():
            raise InputError(folder, "no keystore here: run `gridmatch settle` first")
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder, password, generated, creating=create)

    def role(self, name: str, *, create: bool = False) -> LocalAccount:
        """Return the key of a role: operator, grid operator, ``validator-<k>`` (a V3 file each)."""
        from eth_account import Account

        if name not in self._roles:
            path = self.folder / f"{name}.json"
            if not path.exists():
                if not create:
                    raise InputError(path, f"no key for {name} in the keystore")
                account: LocalAccount = Account.create()
                self._write(path, account.key)
                self._roles[name] = account
            else:
                self._roles[name] = Account.from_key(self._decrypt(path))
        return self._roles[name]

    def signing_key(self, name: str) -> DerivedKey:
        """Return the key of a role to sign messages with (not transactions).

        What a validator process needs of its key, without eth-account.
        """
        path = self.folder / f"{name}.json"
        if not path.exists():
            raise InputError(path, f"no key for {name} in the keystore")
        return DerivedKey.of(self._decrypt(path))

    def participant(self, participant_id: str) -> DerivedKey:
        """Return the (derived) key of a market participant."""
        return self._derive("participant", participant_id)

    def meter(self, participant_id: str) -> DerivedKey:
        """Return the (derived) key of a participant's meter."""
        return self._derive("meter", participant_id)

    def _derive(self, kind: str, name: str) -> DerivedKey:
        key = (kind, name)
        if key not in self._derived:
            digest = keccak(self._seed_bytes() + f"gridmatch:{kind}:{name}".encode())
            scalar = int.from_bytes(digest, "big") % (CURVE_ORDER - 1) + 1
            self._derived[key] = DerivedKey.of(scalar.to_bytes(32, "big"))
        return self._derived[key]

    def _seed_bytes(self) -> bytes:
        if self._seed is None:
            path = self.folder / SEED_FILE
            if path.exists():
                self._seed = self._decrypt(path)
            elif self.creating:
                self._seed = secrets.token_bytes(32)
                self._write(path, self._seed)
            else:
                # A new seed now would sign with keys nobody registered.
                raise InputError(path, "the participants' key seed is missing")
        return self._seed

    def _write(self, path: Path, secret: bytes) -> None:
        from eth_account import Account

        document = Account.encrypt(secret, self.password, kdf="scrypt", iterations=SCRYPT_N)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(document, handle)

    def _decrypt(self, path: Path) -> bytes:
        document: Any = parse_json(read_text(path, RECORD_LIMIT_BYTES, "keystore file"), path)
        try:
            return decrypt_v3(document, self.password)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(path, f"cannot decrypt the key (wrong password?): {exc}") from None


def decrypt_v3(document: Any, password: str) -> bytes:
    """Return the secret of an Ethereum V3 keystore document (as eth-keyfile decrypts it).

    The key derivation is scrypt or PBKDF2-HMAC, the cipher AES-128-CTR; the MAC
    (``keccak256(derived[16:32] + ciphertext)``) is checked, in constant time, before
    anything is decrypted. The same steps and primitives (pycryptodome's scrypt and AES,
    hashlib's PBKDF2) as eth-keyfile's ``decode_keyfile_json``, which eth-account's
    ``Account.decrypt`` calls, without importing it.

    Raises
    ------
    ValueError
        Not a V3 document, an unsupported KDF or cipher, a derived key shorter than
        32 bytes, or the MAC does not match (a wrong password, or a changed file).
    KeyError, TypeError
        A field is missing or of the wrong type.
    """
    keyfile = _lower_keys(document)
    if keyfile["version"] != 3:
        raise ValueError(f"keystore version {keyfile['version']!r}, not 3")
    crypto = keyfile["crypto"]
    params = crypto["kdfparams"]
    secret = password.encode()
    salt = bytes.fromhex(params["salt"].removeprefix("0x"))
    if params["dklen"] < 32:
        raise ValueError(f"a derived key of {params['dklen']!r} bytes, not 32")
    derived: bytes
    if crypto["kdf"] == "scrypt":
        derived = cast(
            bytes,  # one key (num_keys=1), not a tuple
            scrypt(
                secret.decode("latin-1"),  # as eth-keyfile passes them
                salt.decode("latin-1"),
                key_len=params["dklen"],
                N=params["n"],
                r=params["r"],
                p=params["p"],
                num_keys=1,
            ),
        )
    elif crypto["kdf"] == "pbkdf2":
        prf, _, hash_name = params["prf"].partition("-")
        if prf != "hmac":
            raise ValueError(f"unsupported PBKDF2 function {params['prf']!r}")
        derived = hashlib.pbkdf2_hmac(hash_name, secret, salt, params["c"], params["dklen"])
    else:
        raise ValueError(f"unsupported key derivation function {crypto['kdf']!r}")
    if crypto["cipher"] != "aes-128-ctr":
        raise ValueError(f"unsupported cipher {crypto['cipher']!r}")
    ciphertext = bytes.fromhex(crypto["ciphertext"].removeprefix("0x"))
    mac = bytes.fromhex(crypto["mac"].removeprefix("0x"))
    if not hmac.compare_digest(keccak(derived[16:32] + ciphertext), mac):
        raise ValueError("MAC mismatch")
    iv = int.from_bytes(bytes.fromhex(crypto["cipherparams"]["iv"].removeprefix("0x")), "big")
    counter = Counter.new(128, initial_value=iv, allow_wraparound=True)
    return bytes(AES.new(derived[:16], AES.MODE_CTR, counter=counter).decrypt(ciphertext))


def _lower_keys(document: Any) -> Any:
    """Return a JSON object with its keys lower case, nested ones too (``Crypto``: ``crypto``)."""
    if not isinstance(document, dict):
        return document
    return {(k.lower() if isinstance(k, str) else k): _lower_keys(v) for k, v in document.items()}
