"""How well each device model explains what the meter shows in a window: a score and the energy.

:func:`fit_model` sends each model to its signature kind's module (``step_fit``,
``cycling_fit``, ``pv_fit``; what they share is in ``window``). Each looks at the events
that :func:`gridmatch.der_validation.detection.detect` found around a window
``[start_s, end_s)`` and returns a :class:`Fit`: a score in ``[0, 1]`` (already scaled
by the model's ``specificity``), the event the device's delivery started with, and the
energy the device delivered inside the window *by that model's reading of the signal*:

* step signatures (``step_hold``, ``setpoint``, ``step_change``): the pulse's step times
  the time it held inside the window. The step is measured on the samples around it,
  so what the rest of the household does meanwhile does not count;
* ``cycling``: the compressor's on-time inside the window times its step (import), or
  its mean power over the cycles before the window less what it still drew inside
  (curtail); on-time is read against the lowest power of the surrounding period;
* ``clear_sky``: the net export inside the window (export, baseline zero exchange), or
  the mean of the steps at the start and end of the curtailment times its duration.

``direction`` is the sign of the change the operation makes to ``p_kw`` (import from
the grid): +1 for import and for curtailing a generator, -1 for export and for
curtailing or shifting a load (see :func:`gridmatch.der_validation.window.direction`).
"""

from __future__ import annotations

from gridmatch.der_validation.cycling_fit import cycling_off, cycling_on
from gridmatch.der_validation.pv_fit import clear_sky_curtail, clear_sky_export
from gridmatch.der_validation.step_fit import stepped_fit
from gridmatch.der_validation.window import Fit, Window, direction
from gridmatch.scenario_io.der_models import (
    ClearSkyModel,
    CyclingModel,
    DeviceModel,
)


def fit_model(
    name: str,
    model: DeviceModel,
    operation: str,
    window: Window,
    start_s: float,
    end_s: float,
    *,
    committed: bool = True,
    at_least: tuple[float, float] | None = None,
) -> Fit:
    """Score ``model`` (device type ``name``) doing ``operation`` in ``[start_s, end_s)``.

    Parameters
    ----------
    committed
        The window is a commitment's: a device that stopped early must still have held
        for a share of it (a partial delivery). ``False`` when the window is a detected
        pulse itself (classification): then the model's whole minimum hold applies.
    at_least
        ``(score, kWh)`` below which the caller drops a fit: a model may then skip work
        on events that cannot reach them, and return a lesser fit.
    """
    sign = direction(model.kind, operation)
    if isinstance(model, CyclingModel):
        if sign > 0:
            fit = cycling_on(name, model, operation, window, start_s, end_s)
        else:
            fit = cycling_off(name, model, operation, window, start_s, end_s)
    elif isinstance(model, ClearSkyModel):
        if sign < 0:
            fit = clear_sky_export(name, model, operation, window, start_s, end_s)
        else:
            # The model's specificity scales the score after: the bound before it is higher.
            bound = None
            if at_least is not None:
                bound = (at_least[0] / max(model.specificity, 1e-12), at_least[1])
            fit = clear_sky_curtail(
                name, model, operation, window, start_s, end_s, committed, at_least=bound
            )
    else:
        fit = stepped_fit(name, model, operation, sign, window, start_s, end_s, committed)
    if model.specificity < 1.0:
        return Fit(**{**fit.__dict__, "score": fit.score * model.specificity})
    return fit
