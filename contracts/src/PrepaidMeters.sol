// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Settlement} from "./Settlement.sol";

/// @title PrepaidMeters
/// @notice The chain's side of prepaid metering: the grid operator publishes each usage
///         limit it sends a meter and each cutoff and reconnection, so a meter (or its
///         gateway) can follow them on chain; the escrow balance in the {Settlement} is
///         the prepaid balance, and every publication is checked against it.
/// @dev Holds no money and cannot move any: it only reads the settlement's free escrow
///      balances (which deposits, withdrawals and trades move). The rules:
///      - only the grid operator (GRID_OPERATOR_ROLE) publishes;
///      - a usage limit must be payable: limitWh x the highest tariff (rounded up) is at
///        most the account's free escrow, and its counter exceeds the meter's last one
///        (counter-based tokens as in OpenPAYGO: a replayed or stale limit is refused);
///      - a meter may be cut off only while the account's free escrow is below
///        {cutOffBelowMicroEur}, and reconnected only once it is back at
///        {reconnectAtMicroEur} or more (a top-up); a disconnected meter gets no limit.
///      Meters are named by the keccak256 of their id, so a gateway that knows its meter
///      id finds its events by topic.
contract PrepaidMeters is AccessControl {
    /// @notice Publishes usage limits, cutoffs and reconnections.
    bytes32 public constant GRID_OPERATOR_ROLE = keccak256("GRID_OPERATOR_ROLE");

    uint8 public constant KIND_LIMIT = 0;
    uint8 public constant KIND_CUT_OFF = 1;
    uint8 public constant KIND_RECONNECT = 2;

    /// @notice What the chain knows of a meter.
    /// @param account The account whose escrow pays for the meter (its last publication's).
    /// @param counter The counter of its last usage limit (0: none yet).
    /// @param limitWh Its last usage limit (0 after a cutoff).
    /// @param disconnected Cut off and not reconnected since.
    struct MeterState {
        address account;
        uint64 counter;
        uint64 limitWh;
        bool disconnected;
    }

    /// @notice One publication of a batch ({publish}).
    /// @param kind KIND_LIMIT, KIND_CUT_OFF or KIND_RECONNECT.
    /// @param limitWh Only for KIND_LIMIT (0 otherwise).
    /// @param counter Only for KIND_LIMIT (0 otherwise).
    struct Action {
        uint8 kind;
        address account;
        bytes32 meter;
        uint64 limitWh;
        uint64 counter;
    }

    /// @notice Whose escrow is the prepaid balance.
    Settlement public immutable settlement;
    /// @notice The highest price of a kWh of usage (micro-EUR, energy and fees): a limit must
    ///         be payable even at this rate.
    uint64 public immutable maxTariffMicroEurPerKwh;
    /// @notice A meter may be cut off only while its account's free escrow is below this.
    uint256 public immutable cutOffBelowMicroEur;
    /// @notice A cut-off meter may be reconnected only once its account's free escrow is at
    ///         least this (at least {cutOffBelowMicroEur}: no flapping without a top-up).
    uint256 public immutable reconnectAtMicroEur;

    mapping(bytes32 meter => MeterState) private _meters;

    error PrepaidMetersZeroAddress();
    error PrepaidMetersZeroTariff();
    error PrepaidMetersBadThresholds(uint256 cutOffBelow, uint256 reconnectAt);
    error PrepaidMetersUnknownKind(uint8 kind);
    /// @notice The counter does not exceed the meter's last one: replayed or stale.
    error PrepaidMetersStaleCounter(bytes32 meter, uint64 counter, uint64 last);
    /// @notice The account's free escrow does not pay for the limit at the highest tariff.
    error PrepaidMetersLimitNotCovered(address account, uint64 limitWh, uint256 costMicroEur, uint256 freeMicroEur);
    error PrepaidMetersDisconnected(bytes32 meter);
    error PrepaidMetersNotDisconnected(bytes32 meter);
    /// @notice The meter's last publication was for another account (or none yet).
    error PrepaidMetersOtherAccount(bytes32 meter, address account, address meterAccount);
    /// @notice A cutoff while the account still holds at least the threshold.
    error PrepaidMetersBalanceNotLow(address account, uint256 freeMicroEur, uint256 threshold);
    /// @notice A reconnection before the account holds the threshold again.
    error PrepaidMetersBalanceTooLow(address account, uint256 freeMicroEur, uint256 threshold);

    /// @notice `meter` of `account` may use `limitWh` (its limit token number `counter`).
    event UsageLimitSet(address indexed account, bytes32 indexed meter, uint64 limitWh, uint64 counter);
    /// @notice `meter` of `account` was disconnected (its balance ran out).
    event CutOff(address indexed account, bytes32 indexed meter);
    /// @notice `meter` of `account` was connected again (after a top-up).
    event Reconnected(address indexed account, bytes32 indexed meter);

    /// @param admin Receives the admin role (grants and revokes the grid operator).
    /// @param settlement_ The settlement whose escrow is the prepaid balance.
    /// @param gridOperator Receives GRID_OPERATOR_ROLE.
    /// @param maxTariff The highest micro-EUR per kWh of usage (> 0).
    /// @param cutOffBelow Cutoff threshold in micro-EUR (> 0).
    /// @param reconnectAt Reconnection threshold in micro-EUR (>= cutOffBelow).
    constructor(
        address admin,
        Settlement settlement_,
        address gridOperator,
        uint64 maxTariff,
        uint256 cutOffBelow,
        uint256 reconnectAt
    ) {
        if (admin == address(0) || address(settlement_) == address(0) || gridOperator == address(0)) {
            revert PrepaidMetersZeroAddress();
        }
        if (maxTariff == 0) revert PrepaidMetersZeroTariff();
        if (cutOffBelow == 0 || reconnectAt < cutOffBelow) revert PrepaidMetersBadThresholds(cutOffBelow, reconnectAt);
        settlement = settlement_;
        maxTariffMicroEurPerKwh = maxTariff;
        cutOffBelowMicroEur = cutOffBelow;
        reconnectAtMicroEur = reconnectAt;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(GRID_OPERATOR_ROLE, gridOperator);
    }

    // ---------------------------------------------------------------- grid operator

    /// @notice Publish that `meter` of `account` may use `limitWh` under limit number `counter`.
    function setUsageLimit(address account, bytes32 meter, uint64 limitWh, uint64 counter)
        external
        onlyRole(GRID_OPERATOR_ROLE)
    {
        _setUsageLimit(account, meter, limitWh, counter);
    }

    /// @notice Publish that `meter` of `account` is disconnected.
    function cutOff(address account, bytes32 meter) external onlyRole(GRID_OPERATOR_ROLE) {
        _cutOff(account, meter);
    }

    /// @notice Publish that `meter` of `account` is connected again.
    function reconnect(address account, bytes32 meter) external onlyRole(GRID_OPERATOR_ROLE) {
        _reconnect(account, meter);
    }

    /// @notice Publish many limits, cutoffs and reconnections in their order; any refused
    ///         one reverts the whole batch.
    function publish(Action[] calldata actions) external onlyRole(GRID_OPERATOR_ROLE) {
        for (uint256 i; i < actions.length; ++i) {
            Action calldata a = actions[i];
            if (a.kind == KIND_LIMIT) _setUsageLimit(a.account, a.meter, a.limitWh, a.counter);
            else if (a.kind == KIND_CUT_OFF) _cutOff(a.account, a.meter);
            else if (a.kind == KIND_RECONNECT) _reconnect(a.account, a.meter);
            else revert PrepaidMetersUnknownKind(a.kind);
        }
    }

    // ---------------------------------------------------------------- views

    /// @notice The states of many meters.
    function meterStates(bytes32[] calldata meters) external view returns (MeterState[] memory states) {
        states = new MeterState[](meters.length);
        for (uint256 i; i < meters.length; ++i) {
            states[i] = _meters[meters[i]];
        }
    }

    /// @notice What a limit of `limitWh` costs at the highest tariff (micro-EUR, rounded up).
    function limitCost(uint64 limitWh) public view returns (uint256) {
        uint256 product = uint256(limitWh) * maxTariffMicroEurPerKwh;
        return product == 0 ? 0 : (product - 1) / 1000 + 1;
    }

    // ---------------------------------------------------------------- internals

    function _setUsageLimit(address account, bytes32 meter, uint64 limitWh, uint64 counter) private {
        if (account == address(0)) revert PrepaidMetersZeroAddress();
        MeterState storage state = _meters[meter];
        if (state.disconnected) revert PrepaidMetersDisconnected(meter);
        if (counter <= state.counter) revert PrepaidMetersStaleCounter(meter, counter, state.counter);
        uint256 cost = limitCost(limitWh);
        uint256 free = _free(account);
        if (cost > free) revert PrepaidMetersLimitNotCovered(account, limitWh, cost, free);
        (state.account, state.counter, state.limitWh) = (account, counter, limitWh);
        emit UsageLimitSet(account, meter, limitWh, counter);
    }

    function _cutOff(address account, bytes32 meter) private {
        MeterState storage state = _ownMeter(account, meter);
        if (state.disconnected) revert PrepaidMetersDisconnected(meter);
        uint256 free = _free(account);
        if (free >= cutOffBelowMicroEur) revert PrepaidMetersBalanceNotLow(account, free, cutOffBelowMicroEur);
        (state.disconnected, state.limitWh) = (true, 0);
        emit CutOff(account, meter);
    }

    function _reconnect(address account, bytes32 meter) private {
        MeterState storage state = _ownMeter(account, meter);
        if (!state.disconnected) revert PrepaidMetersNotDisconnected(meter);
        uint256 free = _free(account);
        if (free < reconnectAtMicroEur) revert PrepaidMetersBalanceTooLow(account, free, reconnectAtMicroEur);
        state.disconnected = false;
        emit Reconnected(account, meter);
    }

    /// @dev The meter's state, if its last publication was for `account`.
    function _ownMeter(address account, bytes32 meter) private view returns (MeterState storage state) {
        state = _meters[meter];
        if (account == address(0) || state.account != account) {
            revert PrepaidMetersOtherAccount(meter, account, state.account);
        }
    }

    /// @dev The account's free escrow balance in the settlement.
    function _free(address account) private view returns (uint256) {
        address[] memory one = new address[](1);
        one[0] = account;
        // Only the free part pays for usage: money locked for open trades is the trades'.
        // slither-disable-next-line unused-return
        (uint256[] memory free,) = settlement.balancesOf(one);
        return free[0];
    }
}
