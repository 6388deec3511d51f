"""The event-model library of DER commitment validation: its YAML schema, merged and validated.

A library is one YAML file (``der_validation/models/default.yaml`` ships with gridmatch)
with a ``version``, the detection and validation settings, a default site for the
clear-sky curve, and one model per device type. A scenario folder may add
``event_models.yaml`` with the same keys, every one optional:

* ``detection:`` / ``validation:`` / ``default_site:`` -- the keys given replace the
  library's, the others stay;
* ``models:`` -- an entry replaces the library's model of that name, or adds a device
  type; an entry with ``extends: NAME`` starts from model ``NAME`` (the library's, or one
  defined earlier in the same file) and changes only the keys it gives.

Keys given twice, unknown keys and NaN are refused (with the file and the dotted key),
as in every other settings file of gridmatch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridmatch.errors import InputError
from gridmatch.scenario_io.csv_cells import shown
from gridmatch.scenario_io.strict_yaml import read_yaml_mapping, validated_model
from gridmatch.user_files import is_given

Operation = Literal["import", "export", "curtail", "shift"]
OPERATIONS: tuple[str, ...] = ("import", "export", "curtail", "shift")
# A device type names a column value and a report heading: short, plain.
DEVICE_NAME = r"^[a-z][a-z0-9_]{0,39}$"
Kw = Annotated[float, Field(gt=0.0, le=10_000.0)]
Kwh = Annotated[float, Field(gt=0.0, le=1_000_000.0)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
Seconds = Annotated[int, Field(ge=1, le=7 * 86_400)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


class KwRange(_Strict):
    """A closed range of power, kW."""

    min_kw: Kw
    max_kw: Kw

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_kw > self.max_kw:
            raise ValueError("min_kw must not exceed max_kw")
        return self


class SecondsRange(_Strict):
    """A closed range of durations, seconds."""

    min_s: Seconds
    max_s: Seconds

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_s > self.max_s:
            raise ValueError("min_s must not exceed max_s")
        return self


class RatioRange(_Strict):
    """A closed range of a dimensionless ratio."""

    min: Annotated[float, Field(ge=-10.0, le=10.0)]
    max: Annotated[float, Field(ge=-10.0, le=10.0)]

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class _Model(_Strict):
    """What every device model has."""

    description: Annotated[str, Field(max_length=500)] = ""
    kind: Literal["load", "generator", "storage"]
    operations: Annotated[list[Operation], Field(min_length=1, max_length=4)]
    # Relative shortfall of delivered energy still validated (a commitment row may set its own).
    tolerance: Fraction = 0.15
    # Scores of generic models are scaled down, so a specific model that fits wins.
    specificity: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    baseline: Literal["pre_event", "zero_exchange"] = "pre_event"
    # Reactive over active power of the device's step (used when meter data has q_kvar).
    reactive_ratio: RatioRange | None = None

    @model_validator(mode="after")
    def _operations_once(self) -> Self:
        if len(set(self.operations)) != len(self.operations):
            raise ValueError("an operation is listed twice")
        return self


class StepHoldModel(_Model):
    """A device that steps to one of a few power levels and holds (an EV charger)."""

    signature: Literal["step_hold"]
    levels_kw: Annotated[list[Kw], Field(min_length=1, max_length=32)]
    level_tolerance: Fraction = 0.08
    min_hold_s: Seconds = 1200
    max_ramp_s: Seconds = 120
    # Charging ends in a taper (constant voltage); an end without one scores this much.
    abrupt_end_factor: Annotated[float, Field(ge=0.0, le=1.0)] = 0.85


class SetpointModel(_Model):
    """A device that ramps to any flat set-point within one interval and may reverse."""

    signature: Literal["setpoint"]
    setpoint: KwRange
    max_ramp_intervals: Annotated[int, Field(ge=1, le=10)] = 1
    min_hold_s: Seconds = 600
    # Without a level bonus a set-point device scores this much, so a level match wins.
    base_score: Annotated[float, Field(gt=0.0, le=1.0)] = 0.8
    tapered_end_factor: Annotated[float, Field(ge=0.0, le=1.0)] = 0.6
    # Unasked for, a smaller step is the household's own appliances' more often than
    # this device's (its score falls to 0 at detection's min_event_kw); None: no floor.
    min_detect_kw: Kw | None = None
    # Unasked for, a run that moves more energy than this is no one battery's charge or
    # discharge (its score falls with the excess); None: no limit.
    max_energy_kwh: Kwh | None = None


class CyclingModel(_Model):
    """A device that switches a compressor on and off periodically (a heat pump)."""

    signature: Literal["cycling"]
    compressor: KwRange
    period: SecondsRange
    min_cycles: Annotated[int, Field(ge=2, le=100)] = 3
    magnitude_tolerance: Fraction = 0.3
    # A thermostat's period varies little; clouds' shadows come and go at random.
    max_period_variation: Fraction = 0.25


class ClearSkyModel(_Model):
    """A generator that follows the site's clear-sky curve, with cloud dips (PV)."""

    signature: Literal["clear_sky"]
    min_daylight_correlation: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.7
    peak: KwRange
    # Below this clear-sky irradiance (W/m^2) it is night for the model.
    daylight_w_per_m2: Annotated[float, Field(gt=0.0, le=500.0)] = 50.0


class StepChangeModel(_Model):
    """A load that steps by the committed amount and holds (a curtailed process)."""

    signature: Literal["step_change"]
    min_hold_s: Seconds = 600
    max_ramp_s: Seconds = 180
    # As for set-point devices: unasked for, a smaller step is taken as an appliance's.
    min_detect_kw: Kw | None = None
    # Unasked for (a detected run, not a commitment's), the hold a curtailment needs;
    # None: min_hold_s.
    min_detect_hold_s: Seconds | None = None


DeviceModel = Annotated[
    StepHoldModel | SetpointModel | CyclingModel | ClearSkyModel | StepChangeModel,
    Field(discriminator="signature"),
]


class DetectionSpec(_Strict):
    """Change-point detection on the net meter signal (see der_validation/detection.py)."""

    # Steps smaller than this are the household's own appliances, not devices.
    min_event_kw: Kw = 0.8
    # Penalty of a change point: factor * noise variance * ln(samples), kW^2, clipped.
    penalty_factor: Annotated[float, Field(gt=0.0, le=1000.0)] = 6.0
    # Same-sign steps closer than this are one ramp.
    ramp_merge_s: Seconds = 120
    # An off step closes an on step if their sizes differ by at most this share, or
    # by at most pair_tolerance_kw (the noise of small steps).
    pair_tolerance: Fraction = 0.15
    pair_tolerance_kw: Annotated[float, Field(ge=0.0, le=100.0)] = 0.3
    # Detection runs on at most this many samples (finer data is averaged first).
    max_samples: Annotated[int, Field(ge=100, le=20_000)] = 2880


class ValidationSpec(_Strict):
    """How a commitment's window is judged (see der_validation/verdicts.py)."""

    # A device starts within this much of the committed start (or two samples).
    align_tolerance_s: Seconds = 300
    # Pre-event baseline: the mean of this long before the committed start.
    baseline_s: Seconds = 1800
    # Detection context around the window, each side.
    context_s: Seconds = 3600
    # A mistimed delivery is looked for this far each side of the window.
    search_s: Seconds = 5 * 3600
    # Share of the window's samples that must be present.
    min_coverage: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    # A model fits an event from this score on.
    min_score: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    # Delivered at least this share (and less than 1 - tolerance): partially delivered.
    partial_fraction: Fraction = 0.2


class SiteSpec(_Strict):
    """Where the sun is: the clear-sky curve of a site."""

    latitude_deg: Annotated[float, Field(ge=-90.0, le=90.0)]
    longitude_deg: Annotated[float, Field(ge=-180.0, le=180.0)]
    altitude_m: Annotated[float, Field(ge=-500.0, le=9000.0)] = 0.0


class LibrarySpec(_Strict):
    """A complete event-model library (the merged result)."""

    version: Annotated[int, Field(ge=1, le=1_000_000)]
    description: Annotated[str, Field(max_length=2000)] = ""
    detection: DetectionSpec = DetectionSpec()
    validation: ValidationSpec = ValidationSpec()
    default_site: SiteSpec
    models: Annotated[dict[str, DeviceModel], Field(min_length=1, max_length=100)]

    @model_validator(mode="after")
    def _names(self) -> Self:
        for name in self.models:
            if not re.match(DEVICE_NAME, name):
                raise ValueError(
                    f"device type '{name[:50]}': lower-case letters, digits and '_', "
                    "starting with a letter, at most 40 characters"
                )
        return self


@dataclass(frozen=True)
class EventModelLibrary:
    """The validated library a validation runs with, and where it came from.

    Attributes
    ----------
    version
        ``version`` of the default library, then of the scenario's file if any
        (``"1"`` or ``"1+3"``).
    sources
        The files read, default library first.
    """

    spec: LibrarySpec
    version: str
    sources: tuple[Path, ...]

    def model(self, device_type: str) -> DeviceModel:
        """Return the model of a device type (it exists: commitments are checked)."""
        return self.spec.models[device_type]


_SECTIONS = ("detection", "validation", "default_site")
_TOP_KEYS = {"version", "description", "models", *_SECTIONS}


def load_event_models(default_path: Path, scenario_path: Path | None) -> EventModelLibrary:
    """Read the default library and merge a scenario's ``event_models.yaml`` into it.

    Raises
    ------
    InputError
        A malformed file, a key given twice, an unknown key, an ``extends`` of a model
        that does not exist, or a merged model the schema refuses (naming the file and
        the dotted key ``models.NAME.KEY``).
    """
    document = read_yaml_mapping(default_path, "event-model library")
    library = validated_model(LibrarySpec, document, default_path)
    version = str(library.version)
    sources = [default_path]
    if scenario_path is None or not is_given(scenario_path):
        return EventModelLibrary(library, version, tuple(sources))
    extra = read_yaml_mapping(scenario_path, "event models")
    unknown = sorted(str(k) for k in extra if k not in _TOP_KEYS)
    if unknown:
        raise InputError(scenario_path, "unknown key", field=unknown[0])
    if "version" not in extra:
        raise InputError(scenario_path, "required key is missing", field="version")
    merged: dict[str, Any] = library.model_dump(mode="python")
    for section in _SECTIONS:
        if section in extra:
            if not isinstance(extra[section], dict):
                raise InputError(scenario_path, "expected a mapping", field=section)
            merged[section] = {**merged[section], **extra[section]}
    merged["version"] = extra["version"]
    if "description" in extra:
        merged["description"] = extra["description"]
    models = merged["models"]
    given = extra.get("models", {})
    if not isinstance(given, dict):
        raise InputError(scenario_path, "expected a mapping of device types", field="models")
    for name, entry in given.items():
        where = f"models.{name}"
        if not isinstance(entry, dict):
            raise InputError(scenario_path, "expected a mapping (a device model)", field=where)
        entry = dict(entry)
        base_name = entry.pop("extends", None)
        if base_name is not None:
            if not isinstance(base_name, str):
                # Never formatted: a YAML alias bomb (9 lists of 9 of ...) stays a few
                # shared objects until str() walks it, and that took every byte there was.
                raise InputError(
                    scenario_path,
                    f"expected the name of a model, found a {type(base_name).__name__}",
                    field=f"{where}.extends",
                )
            if base_name not in models:
                raise InputError(
                    scenario_path,
                    f"extends '{shown(base_name)}', which is not a model (known: "
                    f"{', '.join(sorted(models))})",
                    field=f"{where}.extends",
                )
            entry = {**models[base_name], **entry}
        models[name] = entry
    spec = validated_model(LibrarySpec, merged, scenario_path)
    sources.append(scenario_path)
    return EventModelLibrary(spec, f"{version}+{spec.version}", tuple(sources))
