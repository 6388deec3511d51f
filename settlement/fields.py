"""Checked field types of the settlement files (records, readings, reports).

Each value that goes into a signature, a digest or a contract call is range- and
shape-checked when a file is read, so a bad value is an error naming its field, not a
failure deep in an encoder.
"""

from __future__ import annotations

from typing import Annotated

import pydantic

Address = Annotated[str, pydantic.StringConstraints(pattern=r"^0x[0-9a-fA-F]{40}$")]
Bytes32Hex = Annotated[str, pydantic.StringConstraints(pattern=r"^0x[0-9a-fA-F]{64}$")]
# r, s, v: 65 bytes.
SignatureHex = Annotated[str, pydantic.StringConstraints(pattern=r"^0x[0-9a-fA-F]{130}$")]
Uint64 = Annotated[int, pydantic.Field(ge=0, lt=2**64)]
Uint32 = Annotated[int, pydantic.Field(ge=0, lt=2**32)]
