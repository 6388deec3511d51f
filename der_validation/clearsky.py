"""The clear-sky curve of a site: global horizontal irradiance from pvlib, per sample.

The validation needs the *shape* of a clear day at the meter's site (PV export follows
it, clouds dip below it), not an irradiance forecast, and it needs it for every window
it judges, so it must cost microseconds: pvlib's analytical solar geometry (Spencer's
declination and equation of time, the analytical zenith) and the Haurwitz clear-sky
model (irradiance from the zenith alone, no turbidity data), all in numpy. The generator
of the benchmark data uses pvlib's full Ineichen model with turbidity on a tilted plane
instead, so the detector never sees exactly the curve it assumes.
"""

from __future__ import annotations

import numpy as np

from gridmatch.scenario_io.der_models import SiteSpec
from gridmatch.units import FloatArray

_DAY_S = 86_400
_HOUR_S = 3600.0
# 1970-01-01 was day 1 of its year; days of year are taken in a 365.25-day mean year.
_UNIX_EPOCH_DAY_OF_YEAR = 1


def clear_sky_ghi(site: SiteSpec, times_s: FloatArray) -> FloatArray:
    """Clear-sky global horizontal irradiance (W/m^2) at Unix times ``times_s``.

    Parameters
    ----------
    site
        Latitude and longitude of the meter (altitude does not change the shape).
    times_s
        Instants, Unix seconds (a sample's mid-point for its mean irradiance).
    """
    from pvlib import solarposition  # the PV model only: not for every import

    times = np.asarray(times_s, dtype=np.float64)
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
