// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SettlementFixture} from "./SettlementFixture.sol";
import {Settlement} from "../src/Settlement.sol";

/// Payment only after verified delivery, in time: an attacker's attempts to settle a trade
/// before its slot is over (votes on readings that cannot be final yet), and to commit a
/// trade whose delivery ends after (or too close to) its round's deadline, when the buyer
/// could reclaim the lock for energy it received. Each test fails on a contract without
/// the time rules.
contract SettlementTimingTest is SettlementFixture {
    /// A slot a day-ahead round trades: delivered after the round is committed.
    uint64 internal constant FUTURE_START = T0 + 2 hours;
    uint64 internal constant FUTURE_END = FUTURE_START + 15 minutes;

    /// A default trade between fresh orders of buyer and seller for [start, end).
    function inputIn(uint64 start, uint64 end) internal returns (Settlement.TradeInput memory) {
        Settlement.Order memory b = buyOrder(buyer, QUANTITY);
        Settlement.Order memory s = sellOrder(seller, QUANTITY);
        (b.slotStart, b.slotEnd, s.slotStart, s.slotEnd) = (start, end, start, end);
        return tradeInput(b, s, QUANTITY, PRICE, FEE);
    }

    /// A sealed round (default deadline: a day) with one trade of the future slot.
    function sealedFutureTrade() internal returns (Settlement.Trade memory) {
        return runRound(1, one(inputIn(FUTURE_START, FUTURE_END)))[0];
    }

    function slotNotEnded(Settlement.Trade memory t) internal view returns (bytes memory) {
        return abi.encodeWithSelector(
            Settlement.SettlementSlotNotEnded.selector, idOf(t), t.slotEnd, uint256(block.timestamp)
        );
    }

    // ------------------------------------------------------------ 1. settle after delivery

    /// Attack: a quorum's votes (or votes on readings forged ahead of time) submitted
    /// before the slot has even started: refused, nothing paid, nothing minted.
    function test_RevertIf_SettledBeforeSlotStarts() public {
        Settlement.Trade memory t = sealedFutureTrade();
        Settlement.SignedVote[] memory votes = votesBy(3, t, QUANTITY);
        vm.expectRevert(slotNotEnded(t));
        settle(t, votes);
        assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Open), "still open");
        assertEq(freeOf(seller), 0, "seller not paid");
        assertEq(energy.balanceOf(buyer, FUTURE_START), 0, "no energy minted");
        assertEq(lockedOf(buyer), lockOf(t), "lock held");
    }

    /// Attack: votes during delivery, and one second before the slot ends: refused; at the
    /// slot's end (its readings are final) the same votes settle.
    function test_RevertIf_SettledDuringDelivery() public {
        Settlement.Trade memory t = sealedFutureTrade();
        Settlement.SignedVote[] memory votes = votesBy(3, t, QUANTITY);
        vm.warp(FUTURE_START + 1);
        vm.expectRevert(slotNotEnded(t));
        settle(t, votes);
        vm.warp(FUTURE_END - 1);
        vm.expectRevert(slotNotEnded(t));
        settle(t, votes);
        vm.warp(FUTURE_END);
        settle(t, votes);
        assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Settled), "settled at the slot's end");
        assertEq(freeOf(seller), uint256(QUANTITY) * PRICE / 1000, "seller paid after delivery");
    }

    /// Attack through the batch: settleBatch skips a trade whose slot has not ended
    /// (SettleSkipped, SlotNotEnded) and still settles the batch's delivered one.
    function test_SettleBatchSkipsTradeNotDeliveredYet() public {
        Settlement.TradeInput[] memory inputs = two(inputIn(FUTURE_START, FUTURE_END), defaultInput(buyer, seller2));
        Settlement.Trade[] memory ts = runRound(1, inputs);
        Settlement.SignedVote[][] memory votes = new Settlement.SignedVote[][](2);
        (votes[0], votes[1]) = (votesBy(3, ts[0], QUANTITY), votesBy(3, ts[1], QUANTITY));
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.SettleSkipped(idOf(ts[0]), Settlement.SkipReason.SlotNotEnded);
        vm.prank(relayer);
        settlement.settleBatch(ts, votes);
        assertEq(uint256(stateOf(ts[0])), uint256(Settlement.TradeState.Open), "future slot stays open");
        assertEq(uint256(stateOf(ts[1])), uint256(Settlement.TradeState.Settled), "delivered slot settles");
        vm.warp(FUTURE_END);
        vm.prank(relayer);
        settlement.settleBatch(oneTrade(ts[0]), oneVoteSet(votes[0]));
        assertEq(uint256(stateOf(ts[0])), uint256(Settlement.TradeState.Settled), "settled after delivery");
    }

    /// Property: for any time before the slot's end, no vote set settles; from the end up
    /// to the deadline a quorum does.
    function testFuzz_SettlesOnlyFromSlotEndToDeadline(uint256 when) public {
        Settlement.Trade memory t = sealedFutureTrade();
        uint64 deadline = settlement.rounds(1).deadline;
        Settlement.SignedVote[] memory votes = votesBy(3, t, QUANTITY);
        uint256 at = bound(when, T0, deadline + 1 days);
        vm.warp(at);
        if (at < FUTURE_END) {
            vm.expectRevert(slotNotEnded(t));
        } else if (at > deadline) {
            vm.expectRevert(abi.encodeWithSelector(Settlement.AttestationClosed.selector, uint64(1), deadline));
        }
        settle(t, votes);
        bool settled = at >= FUTURE_END && at <= deadline;
        assertEq(stateOf(t) == Settlement.TradeState.Settled, settled, "settled exactly in the window");
    }

    // ------------------------------------------------------------ 2. delivery before the deadline

    /// Attack: the operator commits a trade delivered after the round's deadline; were it
    /// accepted, the buyer would reclaim the whole lock after the deadline while (or after)
    /// the seller delivered, and no vote could ever pay the seller. Refused, nothing locked.
    function test_RevertIf_TradeDeliveredAfterDeadline() public {
        uint64 deadline = T0 + 1 days;
        openRound(1, deadline);
        Settlement.TradeInput memory input = inputIn(deadline + 1 hours, deadline + 1 hours + 15 minutes);
        vm.expectRevert(
            abi.encodeWithSelector(
                Settlement.SettlementSlotAfterDeadline.selector, idOf(1, input), input.buy.slotEnd, deadline
            )
        );
        addTrade(1, input);
        assertEq(lockedOf(buyer), 0, "nothing locked");
        assertEq(filledOf(input.buy), 0, "order not used");
    }

    /// Attack: a slot straddling the deadline, and one ending inside the last voting window
    /// (one second too late): refused. Ending exactly the window before: accepted.
    function test_RevertIf_SlotEndsWithinVotingWindowOfDeadline() public {
        uint64 deadline = T0 + 1 days;
        uint64 window = settlement.MIN_VOTING_WINDOW_S();
        openRound(1, deadline);
        Settlement.TradeInput memory straddling = inputIn(deadline - 5 minutes, deadline + 10 minutes);
        vm.expectRevert(
            abi.encodeWithSelector(
                Settlement.SettlementSlotAfterDeadline.selector, idOf(1, straddling), deadline + 10 minutes, deadline
            )
        );
        addTrade(1, straddling);
        uint64 lateEnd = deadline - window + 1;
        Settlement.TradeInput memory late = inputIn(lateEnd - 15 minutes, lateEnd);
        vm.expectRevert(
            abi.encodeWithSelector(Settlement.SettlementSlotAfterDeadline.selector, idOf(1, late), lateEnd, deadline)
        );
        addTrade(1, late);
        Settlement.TradeInput memory onTime = inputIn(deadline - window - 15 minutes, deadline - window);
        addTrade(1, onTime);
        seal(1);
        Settlement.Trade memory t = recordOf(1, onTime);
        // The buyer cannot reclaim before the deadline, and the window is open to votes.
        vm.warp(deadline - window);
        vm.expectRevert(abi.encodeWithSelector(Settlement.DeadlineNotPassed.selector, uint64(1), deadline));
        settlement.reclaim(t);
        voteBy(3, t, QUANTITY);
        assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Settled), "settled in the window");
    }

    /// Property: for any slot end, addTrades accepts the trade exactly when the slot ends
    /// at least the voting window before the deadline.
    function testFuzz_SlotMustEndAWindowBeforeDeadline(uint256 endSeed) public {
        uint64 deadline = T0 + 1 days;
        uint64 window = settlement.MIN_VOTING_WINDOW_S();
        openRound(1, deadline);
        uint64 end = uint64(bound(endSeed, T0 - 1 days, deadline + 1 days));
        Settlement.TradeInput memory input = inputIn(end - 15 minutes, end);
        if (uint256(end) + window > deadline) {
            vm.expectRevert(
                abi.encodeWithSelector(Settlement.SettlementSlotAfterDeadline.selector, idOf(1, input), end, deadline)
            );
        }
        addTrade(1, input);
        assertEq(lockedOf(buyer) > 0, uint256(end) + window <= deadline, "locked only when on time");
    }

    /// Property: an extension only moves the deadline later, so a trade accepted on time
    /// stays on time; a round committed before delivery settles after it.
    function test_DayAheadRoundSettlesAfterDeliveryAndExtensionKeepsTheRule() public {
        Settlement.Trade memory t = sealedFutureTrade();
        uint64 deadline = settlement.rounds(1).deadline;
        vm.prank(admin);
        settlement.extendDeadline(1, deadline + 1 hours);
        assertLe(t.slotEnd + settlement.MIN_VOTING_WINDOW_S(), settlement.rounds(1).deadline, "still on time");
        vm.warp(FUTURE_END + 30 minutes);
        voteBy(3, t, 9000);
        assertEq(energy.balanceOf(buyer, FUTURE_START), 9000, "energy after delivery");
    }
}
