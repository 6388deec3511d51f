"""The clear-sky curve of a site: global horizontal irradiance from pvlib, per sample.

The validation needs the *shape* of a clear day at the meter's site (PV export follows
it, clouds dip below it), not an irradiance forecast, and it needs it for every window
it judges, so it must cost microseconds: pvlib's analytical solar geometry (Spencer's
declination and equation of time, the analytical zenith) and the Haurwitz clear-sky
model (irradiance from the zenith alone, no turbidity data), all in numpy. The generator
of the benchmark data uses pvlib's full Ineichen model with turbidity on a tilted plane
instead, so the detector never sees exactly the curve it assumes.

A meter's windows overlap and lie on its sample grid, so the curve of a regular grid is
computed once per site, grid and day and cut out of that (:func:`clear_sky_ghi`): the
same numbers, as every sample's value depends on its own instant only.
"""

from __future__ import annotations

import math

import numpy as np

from gridmatch.scenario_io.der_models import SiteSpec
from gridmatch.units import FloatArray

_DAY_S = 86_400
_HOUR_S = 3600.0
# 1970-01-01 was day 1 of its year; days of year are taken in a 365.25-day mean year.
_UNIX_EPOCH_DAY_OF_YEAR = 1
# Days of curve kept (site, grid, day; 11.5 kB a day of 1-min samples: 47 MB at most).
_CACHED_DAYS = 4096
# Days computed together when one is missing.
_BATCH_DAYS = 8
_day_curves: dict[tuple[float, float, float, float, int], FloatArray] = {}


def clear_sky_ghi(site: SiteSpec, times_s: FloatArray) -> FloatArray:
    """Clear-sky global horizontal irradiance (W/m^2) at Unix times ``times_s``.

    Parameters
    ----------
    site
        Latitude and longitude of the meter (altitude does not change the shape).
    times_s
        Instants, Unix seconds (a sample's mid-point for its mean irradiance).
    """
    times = np.asarray(times_s, dtype=np.float64)
    step_s = _grid_step_s(times)
    if step_s is None:
        return _ghi(site, times)
    # A regular grid whose step divides the day: the same instants recur every day.
    phase_s = float(times[0] % step_s)
    per_day = round(_DAY_S / step_s)
    first_day = math.floor(times[0] / _DAY_S)
    last_day = math.floor(times[-1] / _DAY_S)
    curve = np.concatenate(
        [_day_curve(site, step_s, phase_s, day, per_day) for day in range(first_day, last_day + 1)]
    )
    offset = round((times[0] - (first_day * _DAY_S + phase_s)) / step_s)
    result: FloatArray = curve[offset : offset + times.size].copy()
    return result


def _grid_step_s(times: FloatArray) -> float | None:
    """Return the step of ``times`` if they are a regular grid whose step divides the day."""
    if times.size < 2:
        return None
    step_s = float(times[1] - times[0])
    if step_s <= 0.0 or step_s > _DAY_S or _DAY_S % step_s != 0.0:
        return None
    expected = times[0] + np.arange(times.size, dtype=np.float64) * step_s
    return step_s if np.array_equal(times, expected) else None


def _day_curve(site: SiteSpec, step_s: float, phase_s: float, day: int, per_day: int) -> FloatArray:
    """Return one UTC day of the curve, on the grid ``day * 86400 + phase_s + k * step_s``.

    A missing day is computed with the :data:`_BATCH_DAYS` after it, in one call: the
    model's cost is mostly per call, and a meter's windows move through its days.
    """
    key = (site.latitude_deg, site.longitude_deg, step_s, phase_s, day)
    curve = _day_curves.get(key)
    if curve is None:
        if len(_day_curves) >= _CACHED_DAYS:
            _day_curves.clear()
        steps = np.arange(per_day * _BATCH_DAYS, dtype=np.float64) * step_s
        times = day * _DAY_S + phase_s + steps
        curves = _ghi(site, times).reshape(_BATCH_DAYS, per_day)
        for k in range(_BATCH_DAYS):
            _day_curves[(*key[:4], day + k)] = curves[k]
        curve = curves[0]
    return curve


def _ghi(site: SiteSpec, times: FloatArray) -> FloatArray:
    """Clear-sky irradiance (W/m^2) at arbitrary instants: the model itself."""
    from pvlib import solarposition  # the PV model only: not for every import

    if times.size == 0:
        return np.zeros(0)
    # The sun's declination and the equation of time change once a day: evaluate them on
    # the stretch's few days and spread them over its samples (a commitment's window
    # spans a day or two, and these series are most of the work per sample otherwise).
    days = np.floor(times / _DAY_S)
    first_day = days.min()
    day_index = (days - first_day).astype(np.int64)
    day_of_year = _day_of_year((first_day + np.arange(day_index.max() + 1)) * _DAY_S)
    declination = solarposition.declination_spencer71(day_of_year)[day_index]
    equation_of_time_min = solarposition.equation_of_time_spencer71(day_of_year)[day_index]
    hours_utc = (times % _DAY_S) / _HOUR_S
    solar_hours = hours_utc + site.longitude_deg / 15.0 + equation_of_time_min / 60.0
    hour_angle = np.radians(15.0 * (solar_hours - 12.0))
    zenith = solarposition.solar_zenith_analytical(
        np.radians(site.latitude_deg), hour_angle, declination
    )
    # Haurwitz (1945), as pvlib.clearsky.haurwitz, which takes only pandas series.
    cos_zenith = np.cos(np.asarray(zenith, dtype=np.float64))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        ghi = 1098.0 * cos_zenith * np.exp(-0.059 / cos_zenith)
    return np.asarray(np.where(cos_zenith > 0.0, np.nan_to_num(ghi), 0.0), dtype=np.float64)


def _day_of_year(times_s: FloatArray) -> FloatArray:
    """Day of the year (1-based, fractional within the day is dropped) of Unix times."""
    days = np.floor(times_s / _DAY_S).astype("datetime64[D]")
    years = days.astype("datetime64[Y]")
    day_of_year: FloatArray = (days - years).astype(np.float64) + _UNIX_EPOCH_DAY_OF_YEAR
    return day_of_year
