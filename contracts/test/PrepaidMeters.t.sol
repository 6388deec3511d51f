// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SettlementFixture} from "./SettlementFixture.sol";
import {Settlement} from "../src/Settlement.sol";
import {PrepaidMeters} from "../src/PrepaidMeters.sol";

/// Prepaid metering on chain: usage limits, cutoffs and reconnections published by the
/// grid operator and checked against the settlement's escrow (the prepaid balance); one
/// attack test per rule.
contract PrepaidMetersTest is SettlementFixture {
    uint64 internal constant TARIFF = 400_000; // micro-EUR per kWh: 0.40 EUR
    uint256 internal constant CUT_OFF_BELOW = 500_000; // 0.50 EUR
    uint256 internal constant RECONNECT_AT = 2_000_000; // 2 EUR
    bytes32 internal constant METER = keccak256("meter-1");
    bytes32 internal constant OTHER_METER = keccak256("meter-2");

    PrepaidMeters internal prepaid;
    address internal gridOperator = address(0x6E1D);
    /// A prepaid customer with a small balance.
    address internal customer;

    function setUp() public override {
        super.setUp();
        customer = makeActor(0xC057, "customer");
        prepaid = new PrepaidMeters(admin, settlement, gridOperator, TARIFF, CUT_OFF_BELOW, RECONNECT_AT);
        fund(customer, 3_000_000); // 3 EUR: 7,500 Wh at the highest tariff
    }

    // ------------------------------------------------------------ the normal life

    /// Property: a payable limit is published with its counter; the meter state follows.
    function test_UsageLimitSet() public {
        vm.expectEmit(true, true, true, true, address(prepaid));
        emit PrepaidMeters.UsageLimitSet(customer, METER, 7500, 1);
        _limit(customer, METER, 7500, 1);
        PrepaidMeters.MeterState memory state = _state(METER);
        assertEq(state.account, customer, "account");
        assertEq(state.counter, 1, "counter");
        assertEq(state.limitWh, 7500, "limit");
        assertFalse(state.disconnected, "connected");
        _limit(customer, METER, 100, 5); // counters may skip (a lost token), never go back
        assertEq(_state(METER).counter, 5, "counter moved on");
    }

    /// Property: the balance runs low (a withdrawal here), the meter is cut off; after a
    /// top-up to the reconnection threshold it is reconnected and gets limits again.
    function test_CutOffAndReconnectAfterTopUp() public {
        _limit(customer, METER, 1000, 1);
        vm.prank(customer);
        settlement.withdraw(2_600_000); // 0.40 EUR left
        vm.expectEmit(true, true, true, true, address(prepaid));
        emit PrepaidMeters.CutOff(customer, METER);
        vm.prank(gridOperator);
        prepaid.cutOff(customer, METER);
        assertTrue(_state(METER).disconnected, "disconnected");
        assertEq(_state(METER).limitWh, 0, "no limit after a cutoff");
        fund(customer, 1_600_000); // 2.00 EUR: exactly the threshold
        vm.expectEmit(true, true, true, true, address(prepaid));
        emit PrepaidMeters.Reconnected(customer, METER);
        vm.prank(gridOperator);
        prepaid.reconnect(customer, METER);
        _limit(customer, METER, 5000, 2);
        assertFalse(_state(METER).disconnected, "connected again");
    }

    /// Property: a batch applies its actions in order, each with its own event.
    function test_PublishBatch() public {
        PrepaidMeters.Action[] memory actions = new PrepaidMeters.Action[](3);
        actions[0] = PrepaidMeters.Action(prepaid.KIND_LIMIT(), customer, METER, 10, 1);
        actions[1] = PrepaidMeters.Action(prepaid.KIND_LIMIT(), customer, METER, 20, 2);
        actions[2] = PrepaidMeters.Action(prepaid.KIND_LIMIT(), buyer, OTHER_METER, 30, 1);
        vm.prank(gridOperator);
        prepaid.publish(actions);
        assertEq(_state(METER).limitWh, 20, "the later limit");
        assertEq(_state(OTHER_METER).account, buyer, "another account's meter");
    }

    /// Property: a limit is payable iff limitWh x tariff / 1000, rounded up, is at most the
    /// free escrow (computed here independently).
    function testFuzz_LimitPayableIffCovered(uint64 limitWh, uint256 freeSeed) public {
        uint256 free = bound(freeSeed, 0, 1e12);
        address who = vm.addr(0xF00D);
        if (free > 0) fund(who, free);
        uint256 product = uint256(limitWh) * TARIFF;
        uint256 cost = product / 1000 + (product % 1000 == 0 ? 0 : 1);
        assertEq(prepaid.limitCost(limitWh), cost, "cost rounds up");
        vm.prank(gridOperator);
        if (cost > free) {
            vm.expectRevert(
                abi.encodeWithSelector(PrepaidMeters.PrepaidMetersLimitNotCovered.selector, who, limitWh, cost, free)
            );
        }
        prepaid.setUsageLimit(who, METER, limitWh, 1);
    }

    // ------------------------------------------------------------ one attack per rule

    /// Rule: only the grid operator publishes (not the customer, the settlement's admin or
    /// operator).
    function test_RevertIf_NotTheGridOperator() public {
        address[3] memory outsiders = [customer, admin, operator];
        bytes32 role = prepaid.GRID_OPERATOR_ROLE();
        for (uint256 i; i < outsiders.length; ++i) {
            bytes memory err =
                abi.encodeWithSignature("AccessControlUnauthorizedAccount(address,bytes32)", outsiders[i], role);
            vm.startPrank(outsiders[i]);
            vm.expectRevert(err);
            prepaid.setUsageLimit(customer, METER, 1, 1);
            vm.expectRevert(err);
            prepaid.cutOff(customer, METER);
            vm.expectRevert(err);
            prepaid.reconnect(customer, METER);
            vm.expectRevert(err);
            prepaid.publish(new PrepaidMeters.Action[](0));
            vm.stopPrank();
        }
    }

    /// Rule: a limit beyond what the escrow pays at the highest tariff (one Wh too many;
    /// money locked for a trade is not free).
    function test_RevertIf_TheLimitIsNotCovered() public {
        vm.expectRevert(
            abi.encodeWithSelector(
                PrepaidMeters.PrepaidMetersLimitNotCovered.selector, customer, 7501, 3_000_400, 3_000_000
            )
        );
        _limit(customer, METER, 7501, 1);
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        uint256 lock = settlement.lockAmount(QUANTITY, PRICE, FEE);
        openRound(1);
        addTrade(1, input);
        uint256 free = BUYER_FUNDS - lock;
        uint64 tooMuch = uint64(free * 1000 / TARIFF + 1);
        vm.expectRevert(
            abi.encodeWithSelector(
                PrepaidMeters.PrepaidMetersLimitNotCovered.selector, buyer, tooMuch, prepaid.limitCost(tooMuch), free
            )
        );
        _limit(buyer, OTHER_METER, tooMuch, 1);
    }

    /// Rule: a limit's counter must exceed the meter's last: a replayed (same counter) or
    /// stale (lower) limit, and counter 0, are refused.
    function test_RevertIf_TheCounterIsReplayedOrStale() public {
        vm.expectRevert(abi.encodeWithSelector(PrepaidMeters.PrepaidMetersStaleCounter.selector, METER, 0, 0));
        _limit(customer, METER, 10, 0);
        _limit(customer, METER, 10, 3);
        vm.expectRevert(abi.encodeWithSelector(PrepaidMeters.PrepaidMetersStaleCounter.selector, METER, 3, 3));
        _limit(customer, METER, 10, 3);
        vm.expectRevert(abi.encodeWithSelector(PrepaidMeters.PrepaidMetersStaleCounter.selector, METER, 2, 3));
        _limit(customer, METER, 5000, 2);
    }

    /// Rule: a cutoff only while the free escrow is below the threshold.
    function test_RevertIf_CutOffWhileTheBalanceIsNotLow() public {
        _limit(customer, METER, 10, 1);
        vm.prank(customer);
        settlement.withdraw(2_500_000); // 0.50 EUR left: exactly the threshold, not below
        vm.prank(gridOperator);
        vm.expectRevert(
            abi.encodeWithSelector(
                PrepaidMeters.PrepaidMetersBalanceNotLow.selector, customer, CUT_OFF_BELOW, CUT_OFF_BELOW
            )
        );
        prepaid.cutOff(customer, METER);
    }

    /// Rule: a reconnection only once the balance is back at the threshold (a top-up).
    function test_RevertIf_ReconnectedWithoutATopUp() public {
        _cutOffCustomer();
        fund(customer, 1_000_000); // 1.40 EUR: above the cutoff, below the reconnection
        vm.prank(gridOperator);
        vm.expectRevert(
            abi.encodeWithSelector(PrepaidMeters.PrepaidMetersBalanceTooLow.selector, customer, 1_400_000, RECONNECT_AT)
        );
        prepaid.reconnect(customer, METER);
    }

    /// Rule: a disconnected meter gets no limit, is not cut off twice, and a connected one
    /// is not "reconnected".
    function test_RevertIf_TheMeterIsInTheWrongState() public {
        _limit(customer, METER, 10, 1);
        vm.prank(gridOperator);
        vm.expectRevert(abi.encodeWithSelector(PrepaidMeters.PrepaidMetersNotDisconnected.selector, METER));
        prepaid.reconnect(customer, METER);
        _cutOffCustomer();
        vm.expectRevert(abi.encodeWithSelector(PrepaidMeters.PrepaidMetersDisconnected.selector, METER));
        _limit(customer, METER, 1, 2);
        vm.prank(gridOperator);
        vm.expectRevert(abi.encodeWithSelector(PrepaidMeters.PrepaidMetersDisconnected.selector, METER));
        prepaid.cutOff(customer, METER);
    }

    /// Rule: a cutoff or reconnection names the meter's own account: not another one (a
    /// customer cut off for someone else's empty balance), not a meter without a limit.
    function test_RevertIf_TheMeterIsAnotherAccounts() public {
        _limit(customer, METER, 10, 1);
        address broke = vm.addr(0xB40CE);
        vm.startPrank(gridOperator);
        vm.expectRevert(
            abi.encodeWithSelector(PrepaidMeters.PrepaidMetersOtherAccount.selector, METER, broke, customer)
        );
        prepaid.cutOff(broke, METER);
        vm.expectRevert(
            abi.encodeWithSelector(PrepaidMeters.PrepaidMetersOtherAccount.selector, OTHER_METER, broke, address(0))
        );
        prepaid.cutOff(broke, OTHER_METER);
        vm.expectRevert(
            abi.encodeWithSelector(
                PrepaidMeters.PrepaidMetersOtherAccount.selector, OTHER_METER, address(0), address(0)
            )
        );
        prepaid.reconnect(address(0), OTHER_METER);
        vm.expectRevert(PrepaidMeters.PrepaidMetersZeroAddress.selector);
        prepaid.setUsageLimit(address(0), OTHER_METER, 0, 1);
        vm.stopPrank();
    }

    /// Rule: a batch with an unknown kind, or with one refused action, reverts whole.
    function test_RevertIf_ABatchHoldsARefusedAction() public {
        PrepaidMeters.Action[] memory actions = new PrepaidMeters.Action[](2);
        actions[0] = PrepaidMeters.Action(0, customer, METER, 10, 1);
        actions[1] = PrepaidMeters.Action(7, customer, METER, 0, 0);
        vm.prank(gridOperator);
        vm.expectRevert(abi.encodeWithSelector(PrepaidMeters.PrepaidMetersUnknownKind.selector, 7));
        prepaid.publish(actions);
        actions[1] = PrepaidMeters.Action(0, customer, METER, 20, 1);
        vm.prank(gridOperator);
        vm.expectRevert(abi.encodeWithSelector(PrepaidMeters.PrepaidMetersStaleCounter.selector, METER, 1, 1));
        prepaid.publish(actions);
        assertEq(_state(METER).counter, 0, "nothing applied");
    }

    /// Rule: the deployment's parameters are sane (addresses, a tariff, thresholds).
    function test_RevertIf_DeployedWithBadParameters() public {
        vm.expectRevert(PrepaidMeters.PrepaidMetersZeroAddress.selector);
        new PrepaidMeters(admin, settlement, address(0), TARIFF, CUT_OFF_BELOW, RECONNECT_AT);
        vm.expectRevert(PrepaidMeters.PrepaidMetersZeroTariff.selector);
        new PrepaidMeters(admin, settlement, gridOperator, 0, CUT_OFF_BELOW, RECONNECT_AT);
        vm.expectRevert(abi.encodeWithSelector(PrepaidMeters.PrepaidMetersBadThresholds.selector, 0, RECONNECT_AT));
        new PrepaidMeters(admin, settlement, gridOperator, TARIFF, 0, RECONNECT_AT);
        vm.expectRevert(
            abi.encodeWithSelector(PrepaidMeters.PrepaidMetersBadThresholds.selector, RECONNECT_AT, CUT_OFF_BELOW)
        );
        new PrepaidMeters(admin, settlement, gridOperator, TARIFF, RECONNECT_AT, CUT_OFF_BELOW);
    }

    // ------------------------------------------------------------ helpers

    function _limit(address account, bytes32 meter, uint64 limitWh, uint64 counter) internal {
        vm.prank(gridOperator);
        prepaid.setUsageLimit(account, meter, limitWh, counter);
    }

    function _state(bytes32 meter) internal view returns (PrepaidMeters.MeterState memory) {
        bytes32[] memory meters = new bytes32[](1);
        meters[0] = meter;
        return prepaid.meterStates(meters)[0];
    }

    /// The customer's meter has a limit, its balance drops to 0.40 EUR, it is cut off.
    function _cutOffCustomer() internal {
        if (_state(METER).counter == 0) _limit(customer, METER, 10, 1);
        vm.prank(customer);
        settlement.withdraw(2_600_000);
        vm.prank(gridOperator);
        prepaid.cutOff(customer, METER);
    }
}
