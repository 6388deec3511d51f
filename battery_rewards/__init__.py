"""Battery reward agreements: telemetry summaries per period and the conditions' verdicts.

Pure Python (no chain): :mod:`.summary` turns a battery's telemetry into each period's
integer summary (the numbers validators sign and ``BatteryRewards.sol`` judges),
:mod:`.conditions` evaluates the agreement's conditions on it and splits the releases by
the shares exactly as the contract does, :mod:`.run` reads a folder and writes the
verdicts. The chain side is :mod:`gridmatch.settlement.battery_rewards`.
"""
