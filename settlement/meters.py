"""Meter readings, signed by the meters, and the files that carry them.

A meter counts, per delivery slot, the Wh its connection exported and imported. Each
reading is an EIP-712 ``MeterReading`` signed by the meter's own key under the
settlement deployment's domain, so it cannot be altered, nor replayed in another
deployment; which meter belongs to which participant is a ``MeterBinding`` the
participant signed. Validators trust a reading only if both signatures check out.

``METER_CSV`` (what a utility's meter export looks like, one row per meter and slot):
``meter_id`` (the participant id whose connection it measures), ``slot``,
``exported_kwh``, ``imported_kwh``; readings count as whole Wh, rounded down.
``gridmatch meters sign`` stands in for the meters: it signs such a file with the
meters' keys of the deployment and writes the signed readings (JSON) validators read.
``gridmatch meters simulate`` writes the file a demonstration needs: every committed
trade delivered, the buyers' meters short by the slot's grid losses.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pydantic

from gridmatch.errors import InputError
from gridmatch.results_io.atomic import write_file_atomically
from gridmatch.settlement.eip712 import Domain, MeterReading, sign
from gridmatch.settlement.fields import Address, SignatureHex, Uint64
from gridmatch.settlement.record import DeploymentRecord
from gridmatch.units import WH_PER_KWH, floor_wh
from gridmatch.user_files import (
    RECORD_LIMIT_BYTES,
    TABLE_LIMIT_BYTES,
    parse_float,
    parse_int,
    parse_json,
    read_text,
    validated,
)

if TYPE_CHECKING:
    # Validator processes import this module for the signed readings: they need
    # neither the keystore (eth-account) nor the CSV cells' helpers (pandas).
    from gridmatch.settlement.keys import Keystore

COLUMNS = ("meter_id", "slot", "exported_kwh", "imported_kwh")
MAX_READING_KWH = 1e9


@dataclass(frozen=True)
class PlainReading:
    """One row of a meter CSV, in Wh."""

    meter_id: str
    slot: int
    exported_wh: int
    imported_wh: int


class SignedReading(pydantic.BaseModel):
    """A reading as a meter signed it (one entry of a signed readings file)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True)

    meter_id: str
    meter: Address
    interval_start: Uint64
    interval_end: Uint64
    exported_wh: Uint64
    imported_wh: Uint64
    signature: SignatureHex

    def message(self) -> MeterReading:
        """Return the signed message."""
        return MeterReading(
            self.meter, self.interval_start, self.interval_end, self.exported_wh, self.imported_wh
        )


class ReadingsFile(pydantic.BaseModel):
    """A signed readings file: the deployment it is for, and the readings."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    chain_id: Uint64
    settlement: Address
    readings: list[SignedReading]


def read_meter_csv(path: Path, participants: set[str] | None = None) -> list[PlainReading]:
    """Read a meter CSV (rows as file lines, header = row 1).

    Parameters
    ----------
    participants
        The participant ids a meter may belong to (``None``: any).

    Raises
    ------
    InputError
        Naming the file, row and field of the first problem.
    """
    from gridmatch.results_io.tables import restore  # pandas: only the CSV needs it

    text = read_text(path, TABLE_LIMIT_BYTES, "meter file", bom=True)
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    readings: list[PlainReading] = []
    seen: dict[tuple[str, int], int] = {}
    try:
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(path, f"missing column(s): {', '.join(missing)}", row=1)
        for row in reader:
            line = reader.line_num
            if None in row.values() or None in row:
                raise InputError(path, f"expected {len(reader.fieldnames or [])} fields", row=line)
            meter_id = restore(row["meter_id"].strip())
            if not meter_id:
                raise InputError(path, "is empty", row=line, field="meter_id")
            if participants is not None and meter_id not in participants:
                raise InputError(
                    path,
                    f"'{meter_id}' is no participant of this deployment",
                    row=line,
                    field="meter_id",
                )
            slot = _slot(path, line, row["slot"])
            if (meter_id, slot) in seen:
                raise InputError(
                    path,
                    f"a second reading of meter {meter_id} in slot {slot} (first on row "
                    f"{seen[meter_id, slot]})",
                    row=line,
                    field="slot",
                )
            seen[meter_id, slot] = line
            readings.append(
                PlainReading(
                    meter_id,
                    slot,
                    _wh(path, line, row, "exported_kwh"),
                    _wh(path, line, row, "imported_kwh"),
                )
            )
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV: {exc}", row=reader.line_num) from None
    return readings


def sign_readings(
    readings: list[PlainReading],
    keystore: Keystore,
    domain: Domain,
    slot_interval: dict[int, tuple[int, int]],
) -> list[SignedReading]:
    """Sign each reading with its meter's key (what the meters themselves would do).

    Parameters
    ----------
    slot_interval
        Start and end (Unix seconds) of each slot of the round.
    """
    signed = []
    for reading in readings:
        if reading.slot not in slot_interval:
            continue  # a slot nobody traded in: nothing to settle
        start, end = slot_interval[reading.slot]
        meter = keystore.meter(reading.meter_id)
        message = MeterReading(meter.address, start, end, reading.exported_wh, reading.imported_wh)
        signature = sign(meter, domain.digest(message.struct_hash()))
        signed.append(
            SignedReading(
                meter_id=reading.meter_id,
                meter=meter.address,
                interval_start=start,
                interval_end=end,
                exported_wh=reading.exported_wh,
                imported_wh=reading.imported_wh,
                signature="0x" + signature.hex(),
            )
        )
    return signed


def simulate_readings(record: DeploymentRecord) -> list[PlainReading]:
    """Return what honest meters would read if every committed trade was delivered.

    A seller's meter exports the Wh it sold in the slot; a buyer's meter imports what it
    bought less the slot's share of grid losses caused by the trades (from the clearing's
    AC power flow), rounded down: the losses the validators allow for.
    """
    exported: dict[tuple[str, int], int] = {}
    bought: dict[tuple[str, int], int] = {}
    for trade in record.trades:
        seller, buyer = (trade.seller_id, trade.slot), (trade.buyer_id, trade.slot)
        exported[seller] = exported.get(seller, 0) + trade.quantity_wh
        bought[buyer] = bought.get(buyer, 0) + trade.quantity_wh
    readings = []
    for meter_id, slot in sorted(exported.keys() | bought.keys()):
        losses = record.trade_losses_share.get(str(slot), 0.0)
        imported = math.floor(bought.get((meter_id, slot), 0) * (1.0 - losses))
        readings.append(PlainReading(meter_id, slot, exported.get((meter_id, slot), 0), imported))
    return readings


def write_meter_csv(path: Path, readings: list[PlainReading]) -> None:
    """Write a meter CSV (kWh with three decimals: whole Wh, as meters count)."""
    from gridmatch.results_io.tables import neutralise  # pandas: only the CSV needs it

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in readings:
        writer.writerow(
            [
                neutralise(r.meter_id),
                r.slot,
                f"{r.exported_wh / WH_PER_KWH:.3f}",
                f"{r.imported_wh / WH_PER_KWH:.3f}",
            ]
        )
    write_file_atomically(path, buffer.getvalue())


def write_signed_readings(path: Path, domain: Domain, readings: list[SignedReading]) -> None:
    """Write a signed readings file (JSON)."""
    document = {
        "chain_id": domain.chain_id,
        "settlement": domain.contract,
        "readings": [r.model_dump() for r in readings],
    }
    write_file_atomically(path, json.dumps(document, indent=1) + "\n")


def read_signed_readings(path: Path) -> list[SignedReading]:
    """Read a signed readings file (signatures are checked by the validators, not here).

    Raises
    ------
    InputError
        Not such a file, naming the field of the first problem.
    """
    return read_signed_readings_file(path).readings


def read_signed_readings_file(path: Path) -> ReadingsFile:
    """Read a signed readings file with the deployment it names.

    Raises
    ------
    InputError
        Not such a file, naming the field of the first problem.
    """
    document = parse_json(read_text(path, RECORD_LIMIT_BYTES, "signed readings file"), path)
    return validated(ReadingsFile, document, path, "signed readings file")


def _slot(path: Path, line: int, text: str) -> int:
    try:
        slot = parse_int(text)
    except ValueError:
        raise InputError(path, f"'{text}' is not a slot number", row=line, field="slot") from None
    if not 0 <= slot < 10_000_000:
        raise InputError(path, "a slot number is >= 0 and < 10,000,000", row=line, field="slot")
    return slot


def _wh(path: Path, line: int, row: dict[str, str], field: str) -> int:
    try:
        value = parse_float(row[field])
    except (TypeError, ValueError):
        raise InputError(path, f"'{row[field]}' is not a number", row=line, field=field) from None
    if not math.isfinite(value) or value < 0 or value > MAX_READING_KWH:
        raise InputError(path, "must be between 0 and 1e9 kWh", row=line, field=field)
    return floor_wh(value)
