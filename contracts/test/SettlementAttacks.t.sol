// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {SettlementFixture} from "./SettlementFixture.sol";
import {Settlement} from "../src/Settlement.sol";
import {EnergyToken} from "../src/EnergyToken.sol";
import {ValidatorRegistry} from "../src/ValidatorRegistry.sol";

/// Attacks that worked against the previous settlement contract (an operator-committed
/// Merkle root with per-buyer locks, settlement at the least agreeing vote), each now
/// refused. Every test is named after the attack it tries.
contract SettlementAttacksTest is SettlementFixture {
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    // ============================================================ signatures

    /// Attack: the operator locks a buyer's deposit for a trade the buyer never signed,
    /// passing random bytes as the signature.
    function test_RevertIf_LockWithForgedBuyerSignature() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        input.buySignature = abi.encodePacked(bytes32(uint256(1)), bytes32(uint256(2)), uint8(27));
        openRound(1);
        vm.expectRevert(
            abi.encodeWithSelector(Settlement.InvalidOrderSignature.selector, buyer, settlement.orderHash(input.buy))
        );
        addTrade(1, input);
        assertEq(lockedOf(buyer), 0, "nothing locked");
    }

    /// Attack: the operator locks a deposit with no signature at all.
    function test_RevertIf_LockWithMissingBuyerSignature() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        input.buySignature = "";
        openRound(1);
        vm.expectRevert(
            abi.encodeWithSelector(Settlement.InvalidOrderSignature.selector, buyer, settlement.orderHash(input.buy))
        );
        addTrade(1, input);
    }

    /// Attack: the operator (holding another key) signs an order in the buyer's name.
    function test_RevertIf_LockWithOrderSignedByAnotherKey() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        input.buySignature = signOrder(MALLORY_KEY, input.buy);
        openRound(1);
        vm.expectRevert(
            abi.encodeWithSelector(Settlement.InvalidOrderSignature.selector, buyer, settlement.orderHash(input.buy))
        );
        addTrade(1, input);
    }

    /// Attack: the operator takes a real signature of a 1 Wh order and raises the order's
    /// quantity and limit: the signature no longer matches the order.
    function test_RevertIf_LockWithSignatureOfAnotherOrder() public {
        Settlement.Order memory small = makeOrder(buyer, true, 1, BUY_LIMIT, MAX_FEE);
        Settlement.TradeInput memory input =
            tradeInput(small, sellOrder(seller, QUANTITY), 1, PRICE, FEE);
        input.buy.quantityWh = QUANTITY;
        input.buy.limitMicroEurPerKwh = 10 * BUY_LIMIT;
        input.quantityWh = QUANTITY;
        openRound(1);
        vm.expectRevert(
            abi.encodeWithSelector(Settlement.InvalidOrderSignature.selector, buyer, settlement.orderHash(input.buy))
        );
        addTrade(1, input);
    }

    /// Attack: the operator sells a seller's energy without the seller's signature.
    function test_RevertIf_SellWithoutSellerSignature() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        input.sellSignature = signOrder(MALLORY_KEY, input.sell);
        openRound(1);
        vm.expectRevert(
            abi.encodeWithSelector(Settlement.InvalidOrderSignature.selector, seller, settlement.orderHash(input.sell))
        );
        addTrade(1, input);
    }

    /// Attack: the malleable twin (s' = n - s, v flipped) of a valid signature is refused,
    /// so a signature cannot be replayed under a second encoding.
    function test_RevertIf_LockWithMalleatedSignature() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        bytes32 hash = settlement.orderHash(input.buy);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(BUYER_KEY, hash);
        input.buySignature = abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        openRound(1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.InvalidOrderSignature.selector, buyer, hash));
        addTrade(1, input);
    }

    /// Attack: replay a buyer's order signed for another settlement deployment (EIP-712
    /// domain: chain and contract).
    function test_RevertIf_LockWithSignatureForAnotherDeployment() public {
        Settlement other = new Settlement(admin, payment, registry, fees, TOLERANCE_PER_MILLE);
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(BUYER_KEY, other.orderHash(input.buy));
        input.buySignature = abi.encodePacked(r, s, v);
        openRound(1);
        vm.expectRevert(
            abi.encodeWithSelector(Settlement.InvalidOrderSignature.selector, buyer, settlement.orderHash(input.buy))
        );
        addTrade(1, input);
    }

    /// Attack: an order "of" address(0) with an unrecoverable signature (ecrecover's 0).
    function test_RevertIf_LockForZeroAddressParticipant() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        input.buy.participant = address(0);
        input.buySignature = abi.encodePacked(bytes32(uint256(1)), bytes32(uint256(1)), uint8(30));
        openRound(1);
        vm.expectRevert(
            abi.encodeWithSelector(
                Settlement.InvalidOrderSignature.selector, address(0), settlement.orderHash(input.buy)
            )
        );
        addTrade(1, input);
    }

    // ============================================================ prices

    /// Attack: the operator trades 1 Wh of the buyer's order at an absurd price to an
    /// accomplice who signed a sell order with no minimum.
    function test_RevertIf_AbsurdPriceToAccomplice() public {
        Settlement.Order memory buy = buyOrder(buyer, QUANTITY);
        Settlement.Order memory accomplice = makeOrder(mallory, false, 1, 0, 0);
        Settlement.TradeInput memory input = tradeInput(buy, accomplice, 1, 1e15, 0);
        openRound(1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.PriceOutsideLimits.selector, idOf(1, input)));
        addTrade(1, input);
    }

    /// Attack: the price stays low but the grid fee exceeds the buyer's fee cap.
    function test_RevertIf_FeeAboveBuyerCap() public {
        Settlement.TradeInput memory input =
            tradeInput(buyOrder(buyer, QUANTITY), sellOrder(seller, QUANTITY), QUANTITY, SELL_LIMIT, MAX_FEE + 1);
        assertLe(SELL_LIMIT + MAX_FEE + 1, BUY_LIMIT, "within the total limit");
        openRound(1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.PriceOutsideLimits.selector, idOf(1, input)));
        addTrade(1, input);
    }

    /// Attack: price and fee each within bounds, their sum above the buyer's limit.
    function test_RevertIf_PricePlusFeeAboveBuyerLimit() public {
        Settlement.TradeInput memory input = tradeInput(
            buyOrder(buyer, QUANTITY), sellOrder(seller, QUANTITY), QUANTITY, BUY_LIMIT - FEE + 1, FEE
        );
        openRound(1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.PriceOutsideLimits.selector, idOf(1, input)));
        addTrade(1, input);
    }

    /// Attack: the operator dumps a seller's energy below the seller's minimum.
    function test_RevertIf_PriceBelowSellerLimit() public {
        Settlement.TradeInput memory input =
            tradeInput(buyOrder(buyer, QUANTITY), sellOrder(seller, QUANTITY), QUANTITY, SELL_LIMIT - 1, 0);
        openRound(1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.PriceOutsideLimits.selector, idOf(1, input)));
        addTrade(1, input);
    }

    /// Property: the limits are inclusive: price = seller's minimum, price + fee = buyer's
    /// limit and fee = buyer's cap are all accepted.
    function test_PricesAtTheExactLimitsAccepted() public {
        Settlement.Order memory buy = makeOrder(buyer, true, QUANTITY, SELL_LIMIT + MAX_FEE, MAX_FEE);
        Settlement.TradeInput memory input = tradeInput(buy, sellOrder(seller, QUANTITY), QUANTITY, SELL_LIMIT, MAX_FEE);
        openRound(1);
        addTrade(1, input);
        assertEq(uint256(settlement.tradeState(idOf(1, input))), uint256(Settlement.TradeState.Open), "accepted");
    }

    // ============================================================ expiry and deadlines

    /// Attack: lock a buyer's money in a round whose deadline lies beyond the buy order's
    /// expiry (the money would stay locked after the buyer's consent ran out).
    function test_RevertIf_LockPastOrderExpiry() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        input.buy.expiry = uint64(block.timestamp) + 12 hours;
        input = tradeInput(input.buy, input.sell, QUANTITY, PRICE, FEE);
        openRound(1, uint64(block.timestamp) + 1 days);
        vm.expectRevert(
            abi.encodeWithSelector(Settlement.OrderExpired.selector, settlement.orderHash(input.buy), input.buy.expiry)
        );
        addTrade(1, input);
    }

    /// Attack: same with the seller's order.
    function test_RevertIf_SellOrderExpiresBeforeDeadline() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        input.sell.expiry = uint64(block.timestamp) + 1 days - 1;
        input = tradeInput(input.buy, input.sell, QUANTITY, PRICE, FEE);
        openRound(1, uint64(block.timestamp) + 1 days);
        vm.expectRevert(
            abi.encodeWithSelector(
                Settlement.OrderExpired.selector, settlement.orderHash(input.sell), input.sell.expiry
            )
        );
        addTrade(1, input);
    }

    /// Attack: use an order after it expired.
    function test_RevertIf_LockExpiredOrder() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        input.buy.expiry = uint64(block.timestamp) + 1 hours;
        input = tradeInput(input.buy, input.sell, QUANTITY, PRICE, FEE);
        vm.warp(block.timestamp + 2 hours);
        openRound(1, uint64(block.timestamp) + 10 minutes);
        vm.expectRevert(
            abi.encodeWithSelector(Settlement.OrderExpired.selector, settlement.orderHash(input.buy), input.buy.expiry)
        );
        addTrade(1, input);
    }

    /// Property: an order expiring exactly at the deadline may be locked until then.
    function test_OrderExpiringAtTheDeadlineAccepted() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        uint64 deadline = uint64(block.timestamp) + 1 days;
        input.buy.expiry = deadline;
        input = tradeInput(input.buy, input.sell, QUANTITY, PRICE, FEE);
        openRound(1, deadline);
        addTrade(1, input);
        assertEq(settlement.rounds(1).minExpiry, deadline, "min expiry");
    }

    /// Attack: after the trades are in, the admin extends the deadline past the earliest
    /// order expiry of the round (locking money beyond the consent).
    function test_RevertIf_ExtendDeadlineBeyondOrderExpiry() public {
        uint64 expiry = uint64(block.timestamp) + 2 days;
        Settlement.Order memory buy = buyOrder(buyer, QUANTITY);
        buy.expiry = expiry;
        openRound(1, uint64(block.timestamp) + 1 days);
        addTrade(1, tradeInput(buy, sellOrder(seller, QUANTITY), QUANTITY, PRICE, FEE));
        vm.expectRevert(abi.encodeWithSelector(Settlement.InvalidDeadline.selector, uint64(1), expiry + 1));
        vm.prank(admin);
        settlement.extendDeadline(1, expiry + 1);
        vm.prank(admin);
        settlement.extendDeadline(1, expiry);
        assertEq(settlement.rounds(1).deadline, expiry, "extended to the expiry");
    }

    /// Attack: extend a deadline by more than 7 days at once.
    function test_RevertIf_ExtendDeadlineByMoreThanSevenDays() public {
        uint64 deadline = uint64(block.timestamp) + 1 days;
        openRound(1, deadline);
        uint64 tooFar = deadline + settlement.MAX_EXTENSION_S() + 1;
        vm.expectRevert(abi.encodeWithSelector(Settlement.InvalidDeadline.selector, uint64(1), tooFar));
        vm.prank(admin);
        settlement.extendDeadline(1, tooFar);
        vm.prank(admin);
        settlement.extendDeadline(1, tooFar - 1);
        assertEq(settlement.rounds(1).deadline, tooFar - 1, "extended by 7 days");
    }

    /// Attack: revive a round whose deadline passed (its trades are reclaimable) by
    /// extending it; also an "extension" to an earlier time.
    function test_RevertIf_ExtendDeadlineAfterItPassed() public {
        uint64 deadline = uint64(block.timestamp) + 1 days;
        openRound(1, deadline);
        vm.expectRevert(abi.encodeWithSelector(Settlement.InvalidDeadline.selector, uint64(1), deadline));
        vm.prank(admin);
        settlement.extendDeadline(1, deadline);
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.InvalidDeadline.selector, uint64(1), deadline + 1 hours));
        vm.prank(admin);
        settlement.extendDeadline(1, deadline + 1 hours);
    }

    /// Attack: the operator (or anyone but the admin) extends a deadline; unknown rounds.
    function test_RevertIf_ExtendDeadlineByNonAdminOrUnknownRound() public {
        openRound(1);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, operator, bytes32(0))
        );
        vm.prank(operator);
        settlement.extendDeadline(1, uint64(block.timestamp) + 2 days);
        vm.expectRevert(abi.encodeWithSelector(Settlement.UnknownRound.selector, uint64(2)));
        vm.prank(admin);
        settlement.extendDeadline(2, uint64(block.timestamp) + 2 days);
    }

    /// Attack: open a round with a deadline in the past or more than 30 days ahead.
    function test_RevertIf_RoundDeadlineOutOfRange() public {
        uint64 now_ = uint64(block.timestamp);
        vm.expectRevert(abi.encodeWithSelector(Settlement.InvalidDeadline.selector, uint64(1), now_));
        openRound(1, now_);
        uint64 tooFar = now_ + settlement.MAX_ROUND_DURATION_S() + 1;
        vm.expectRevert(abi.encodeWithSelector(Settlement.InvalidDeadline.selector, uint64(1), tooFar));
        openRound(1, tooFar);
    }

    // ============================================================ fills, nonces, duplicates

    /// Attack: fill a 10 kWh buy order twice with 6 kWh in one chunk.
    function test_RevertIf_OverfillWithinChunk() public {
        Settlement.Order memory buy = buyOrder(buyer, QUANTITY);
        Settlement.TradeInput memory a = tradeInput(buy, sellOrder(seller, QUANTITY), 6000, PRICE, FEE);
        Settlement.TradeInput memory b = tradeInput(buy, sellOrder(seller2, QUANTITY), 6000, PRICE, FEE);
        openRound(1);
        vm.expectRevert(
            abi.encodeWithSelector(
                Settlement.OrderOverfilled.selector, settlement.orderHash(buy), uint64(6000), QUANTITY
            )
        );
        addTrades(1, two(a, b));
    }

    /// Attack: the same, split over two chunks of one round.
    function test_RevertIf_OverfillAcrossChunks() public {
        Settlement.Order memory buy = buyOrder(buyer, QUANTITY);
        openRound(1);
        addTrade(1, tradeInput(buy, sellOrder(seller, QUANTITY), 6000, PRICE, FEE));
        Settlement.TradeInput memory b = tradeInput(buy, sellOrder(seller2, QUANTITY), 6000, PRICE, FEE);
        vm.expectRevert(
            abi.encodeWithSelector(
                Settlement.OrderOverfilled.selector, settlement.orderHash(buy), uint64(6000), QUANTITY
            )
        );
        addTrade(1, b);
    }

    /// Attack: the same over two rounds, even after the first trade's lock was reclaimed
    /// (a fill, once accepted, stays counted).
    function test_RevertIf_OverfillAcrossRounds() public {
        Settlement.Order memory buy = buyOrder(buyer, QUANTITY);
        Settlement.Order memory sell = sellOrder(seller, 2 * QUANTITY);
        Settlement.Trade memory first = runRound(1, one(tradeInput(buy, sell, 6000, PRICE, FEE)))[0];
        vm.warp(settlement.rounds(1).deadline + 1);
        settlement.reclaim(first);
        openRound(2);
        Settlement.TradeInput memory again = tradeInput(buy, sell, 6000, PRICE, FEE);
        vm.expectRevert(
            abi.encodeWithSelector(
                Settlement.OrderOverfilled.selector, settlement.orderHash(buy), uint64(6000), QUANTITY
            )
        );
        addTrade(2, again);
        again.quantityWh = 4000;
        addTrade(2, again);
        assertEq(settlement.filledWh(settlement.orderHash(buy)), QUANTITY, "filled exactly");
    }

    /// Attack: overfill a seller's order with two buyers.
    function test_RevertIf_OverfillSellOrder() public {
        fund(buyer2, BUYER_FUNDS);
        Settlement.Order memory sell = sellOrder(seller, QUANTITY);
        Settlement.TradeInput memory a = tradeInput(buyOrder(buyer, QUANTITY), sell, 6000, PRICE, FEE);
        Settlement.TradeInput memory b = tradeInput(buyOrder(buyer2, QUANTITY), sell, 6000, PRICE, FEE);
        openRound(1);
        vm.expectRevert(
            abi.encodeWithSelector(
                Settlement.OrderOverfilled.selector, settlement.orderHash(sell), uint64(6000), QUANTITY
            )
        );
        addTrades(1, two(a, b));
    }

    /// Attack: the buyer's nonce, already used for one order, is reused for another
    /// (e.g. a replayed or re-signed order with a higher limit).
    function test_RevertIf_NonceReusedForAnotherOrder() public {
        Settlement.Order memory first = buyOrder(buyer, QUANTITY);
        openRound(1);
        addTrade(1, tradeInput(first, sellOrder(seller, QUANTITY), 1000, PRICE, FEE));
        Settlement.Order memory second = first;
        second.limitMicroEurPerKwh = BUY_LIMIT + 1;
        Settlement.TradeInput memory input = tradeInput(second, sellOrder(seller2, QUANTITY), 1000, PRICE, FEE);
        vm.expectRevert(abi.encodeWithSelector(Settlement.NonceReused.selector, buyer, first.nonce));
        addTrade(1, input);
    }

    /// Attack: trade an order whose nonce the participant cancelled.
    function test_RevertIf_CancelledOrder() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        vm.prank(buyer);
        settlement.cancelOrder(input.buy.nonce);
        openRound(1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.OrderCancelled.selector, buyer, input.buy.nonce));
        addTrade(1, input);
    }

    /// Attack: keep filling an order after the participant cancelled it mid-way.
    function test_RevertIf_CancelledAfterPartialFill() public {
        Settlement.Order memory buy = buyOrder(buyer, QUANTITY);
        Settlement.Order memory sell = sellOrder(seller, QUANTITY);
        runRound(1, one(tradeInput(buy, sell, 4000, PRICE, FEE)));
        vm.prank(buyer);
        settlement.cancelOrder(buy.nonce);
        openRound(2);
        Settlement.TradeInput memory rest = tradeInput(buy, sell, 4000, PRICE, FEE);
        vm.expectRevert(abi.encodeWithSelector(Settlement.OrderCancelled.selector, buyer, buy.nonce));
        addTrade(2, rest);
    }

    /// Attack: a griefer "cancels" someone else's nonce: cancellation is per signer.
    function test_CancelByAnotherAccountDoesNotCancel() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        vm.prank(mallory);
        settlement.cancelOrder(input.buy.nonce);
        openRound(1);
        addTrade(1, input);
        assertEq(uint256(settlement.tradeState(idOf(1, input))), uint256(Settlement.TradeState.Open), "accepted");
    }

    /// Attack: the same trade row twice in one chunk (a double lock).
    function test_RevertIf_DuplicateTradeRowsInChunk() public {
        Settlement.TradeInput memory input =
            tradeInput(buyOrder(buyer, QUANTITY), sellOrder(seller, QUANTITY), 1000, PRICE, FEE);
        openRound(1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.TradeExists.selector, idOf(1, input)));
        addTrades(1, two(input, input));
    }

    /// Attack: the same trade row in two chunks of a round.
    function test_RevertIf_DuplicateTradeRowsAcrossChunks() public {
        Settlement.TradeInput memory input =
            tradeInput(buyOrder(buyer, QUANTITY), sellOrder(seller, QUANTITY), 1000, PRICE, FEE);
        openRound(1);
        addTrade(1, input);
        vm.expectRevert(abi.encodeWithSelector(Settlement.TradeExists.selector, idOf(1, input)));
        addTrade(1, input);
    }

    /// Attack: mismatched orders: two buys, different slots, or a participant trading with
    /// itself (wash trade moving its own lock around).
    function test_RevertIf_OrdersDoNotMatch() public {
        openRound(1);
        Settlement.Order memory buy = buyOrder(buyer, QUANTITY);
        Settlement.Order memory otherBuy = buyOrder(seller, QUANTITY);
        Settlement.TradeInput memory twoBuys = tradeInput(buy, otherBuy, 1000, PRICE, FEE);
        vm.expectRevert(
            abi.encodeWithSelector(
                Settlement.OrdersDoNotMatch.selector, settlement.orderHash(buy), settlement.orderHash(otherBuy)
            )
        );
        addTrade(1, twoBuys);

        Settlement.Order memory laterSell = sellOrder(seller, QUANTITY);
        laterSell.slotStart += 15 minutes;
        laterSell.slotEnd += 15 minutes;
        Settlement.TradeInput memory slots = tradeInput(buy, laterSell, 1000, PRICE, FEE);
        vm.expectRevert(
            abi.encodeWithSelector(
                Settlement.OrdersDoNotMatch.selector, settlement.orderHash(buy), settlement.orderHash(laterSell)
            )
        );
        addTrade(1, slots);

        Settlement.Order memory selfSell = sellOrder(buyer, QUANTITY);
        Settlement.TradeInput memory wash = tradeInput(buy, selfSell, 1000, PRICE, FEE);
        vm.expectRevert(
            abi.encodeWithSelector(
                Settlement.OrdersDoNotMatch.selector, settlement.orderHash(buy), settlement.orderHash(selfSell)
            )
        );
        addTrade(1, wash);
    }

    /// Attack: a trade of 0 Wh (a lock-free entry that could still take votes).
    function test_RevertIf_ZeroQuantityTrade() public {
        Settlement.TradeInput memory input =
            tradeInput(buyOrder(buyer, QUANTITY), sellOrder(seller, QUANTITY), 0, PRICE, FEE);
        openRound(1);
        vm.expectRevert(Settlement.ZeroAmount.selector);
        addTrade(1, input);
    }

    /// Attack: someone without the operator role opens or fills a round; trades added to
    /// a sealed round.
    function test_RevertIf_NonOperatorOrSealedRound() public {
        bytes32 role = settlement.OPERATOR_ROLE();
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, mallory, role));
        vm.prank(mallory);
        settlement.openRound(1, bytes32(0), uint64(block.timestamp) + 1 days);

        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        openRound(1);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, mallory, role));
        vm.prank(mallory);
        settlement.addTrades(1, one(input));

        seal(1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.RoundNotOpen.selector, uint64(1)));
        addTrade(1, input);
        vm.expectRevert(abi.encodeWithSelector(Settlement.RoundExists.selector, uint64(1)));
        openRound(1);
    }

    // ============================================================ validators and quorum

    /// Property: quorum = floor(2n/3) + 1, strictly more than two thirds, for n = 1..7.
    function test_QuorumIsStrictlyAboveTwoThirds() public {
        ValidatorRegistry fresh = new ValidatorRegistry(admin);
        assertEq(fresh.quorum(), type(uint256).max, "no validators: no quorum");
        uint256[7] memory expected = [uint256(1), 2, 3, 3, 4, 5, 5];
        for (uint256 n = 1; n <= 7; ++n) {
            vm.prank(admin);
            fresh.register(validatorAt(n));
            uint256 q = fresh.quorum();
            assertEq(q, expected[n - 1], "quorum table");
            assertTrue(3 * q > 2 * n, "more than two thirds");
            assertTrue(3 * (q - 1) <= 2 * n, "the smallest such number");
        }
    }

    /// Attack: one validator alone (and any floor(2n/3) colluders) settles a trade or
    /// zeroes its payment, for validator sets of n = 2..7.
    function test_OneValidatorCannotSettleOrZeroPayment() public {
        for (uint256 i; i < 3; ++i) {
            revokeValidator(validatorAt(i));
        }
        for (uint64 n = 2; n <= 7; ++n) {
            registerValidators(n);
            assertEq(registry.count(), n, "n validators");
            Settlement.Trade memory t = sealedDefaultTrade(n);
            uint256 lock = lockOf(t);
            vote(validatorAt(0), t, 0);
            assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Open), "one vote does not settle");
            for (uint256 i = 1; i < n * 2 / 3; ++i) {
                vote(validatorAt(i), t, 0);
            }
            assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Open), "a minority does not settle");
            assertEq(freeOf(seller), 0, "seller unpaid");
            assertEq(settlement.votesOf(idOf(t)).length, n * 2 / 3, "votes recorded");
            assertGe(lockedOf(buyer), lock, "still locked");
        }
        assertEq(settlement.totalPaidWh(), 0, "nothing settled");
    }

    /// Attack: a validator's vote is kept after the validator is revoked (e.g. for
    /// colluding), and comes back when it is registered again.
    function test_RevokedValidatorVoteNoLongerCounts() public {
        registerValidators(4); // quorum 3
        Settlement.Trade memory t = sealedDefaultTrade(1);
        vote(validatorAt(0), t, QUANTITY);
        vote(validatorAt(1), t, QUANTITY);
        revokeValidator(validatorAt(0)); // n = 3, quorum 3
        vote(validatorAt(2), t, QUANTITY);
        assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Open), "revoked vote not counted");

        vm.prank(admin);
        registry.register(validatorAt(0)); // n = 4, quorum 3, a new epoch
        vote(validatorAt(3), t, 0);
        assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Open), "re-registration does not revive it");

        vote(validatorAt(0), t, QUANTITY); // a fresh vote replaces the void one
        assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Settled), "settled by current votes");
        assertEq(settlement.votesOf(idOf(t)).length, 4, "void vote replaced, not appended");
    }

    /// Attack: a revoked validator keeps voting; a validator votes twice.
    function test_RevertIf_RevokedValidatorVotesOrVotesTwice() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        vote(validatorAt(0), t, QUANTITY);
        vm.expectRevert(abi.encodeWithSelector(Settlement.AlreadyVoted.selector, idOf(t), validatorAt(0)));
        vote(validatorAt(0), t, 0);
        revokeValidator(validatorAt(1));
        vm.expectRevert(abi.encodeWithSelector(Settlement.NotAValidator.selector, validatorAt(1)));
        vote(validatorAt(1), t, QUANTITY);
    }

    /// Attack: a non-validator (mallory, the operator, the admin) votes.
    function test_RevertIf_NonValidatorVotes() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        address[3] memory outsiders = [mallory, operator, admin];
        for (uint256 i; i < 3; ++i) {
            vm.expectRevert(abi.encodeWithSelector(Settlement.NotAValidator.selector, outsiders[i]));
            vote(outsiders[i], t, QUANTITY);
            vm.expectRevert(abi.encodeWithSelector(Settlement.NotAValidator.selector, outsiders[i]));
            vm.prank(outsiders[i]);
            settlement.attestBatch(oneTrade(t), oneWh(QUANTITY));
        }
    }

    /// Attack: the lowest of the agreeing votes set the payment (a validator shading its
    /// vote down within the tolerance cut the seller's pay): now the median is paid.
    function test_PaidValueIsMedianOfAgreeingGroupNotLeast() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        // Tolerance 20 per mille of 10 000 Wh = 200 Wh: the three votes agree.
        vote(validatorAt(0), t, 9800);
        vote(validatorAt(1), t, 10_000);
        vote(validatorAt(2), t, 9900);
        uint256 payment = uint256(9900) * PRICE / 1000;
        uint256 fee = uint256(9900) * FEE / 1000;
        assertEq(freeOf(seller), payment, "median (9900 Wh) paid, not the least (9800 Wh)");
        assertEq(freeOf(fees), fee, "fee on the median");
        assertEq(freeOf(buyer), BUYER_FUNDS - payment - fee, "rest refunded");
        assertEq(energy.balanceOf(buyer, SLOT_START), 9900, "energy tokens for the median");
        assertEq(settlement.totalPaidWh(), 9900, "total paid Wh");
    }

    /// Attack: a validator votes low (within tolerance) to drag the payment down; with an
    /// outlier at 0 in the set as well.
    function test_LowVoteWithinToleranceCannotDragPaymentDown() public {
        registerValidators(4); // quorum 3
        Settlement.Trade memory t = sealedDefaultTrade(1);
        vote(validatorAt(0), t, 0);
        vote(validatorAt(1), t, QUANTITY);
        vote(validatorAt(2), t, QUANTITY - 200);
        assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Open), "no quorum yet");
        vote(validatorAt(3), t, QUANTITY);
        assertEq(freeOf(seller), uint256(QUANTITY) * PRICE / 1000, "paid at the median, the full quantity");
    }

    /// Attack: validators report more than the trade's quantity to overpay the seller.
    function test_VotesAboveQuantityPaidAtQuantity() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        voteBy(3, t, 3 * QUANTITY);
        assertEq(freeOf(seller), uint256(QUANTITY) * PRICE / 1000, "capped at the quantity");
        assertEq(freeOf(buyer), BUYER_FUNDS - lockOf(t), "no refund: the whole lock is spent");
        assertEq(energy.balanceOf(buyer, SLOT_START), QUANTITY, "energy capped");
    }

    /// Property: votes that do not agree within the tolerance never settle; the buyer
    /// reclaims the lock after the deadline.
    function test_DisagreeingVotesDoNotSettle() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        vote(validatorAt(0), t, QUANTITY);
        vote(validatorAt(1), t, QUANTITY - 201);
        vote(validatorAt(2), t, QUANTITY + 201);
        assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Open), "no agreement");
        vm.warp(settlement.rounds(1).deadline + 1);
        settlement.reclaim(t);
        assertEq(freeOf(buyer), BUYER_FUNDS, "all back");
    }

    /// Attack: deploy with a huge tolerance so that any votes "agree".
    function test_RevertIf_ToleranceAbove100PerMille() public {
        vm.expectRevert(abi.encodeWithSelector(Settlement.SettlementToleranceTooLarge.selector, uint64(101)));
        new Settlement(admin, payment, registry, fees, 101);
        vm.expectRevert(
            abi.encodeWithSelector(Settlement.SettlementToleranceTooLarge.selector, type(uint64).max)
        );
        new Settlement(admin, payment, registry, fees, type(uint64).max);
        Settlement widest = new Settlement(admin, payment, registry, fees, 100);
        assertEq(widest.tolerancePerMille(), 100, "100 per mille is the maximum");
    }

    // ============================================================ escrow

    /// Attack: one buyer short of escrow blocks the whole round (the previous contract
    /// rejected a round when any buyer was short): its trade is dropped, the others added.
    function test_ShortBuyerDroppedOthersAdded() public {
        Settlement.TradeInput memory a = defaultInput(buyer, seller);
        Settlement.TradeInput memory shortOne = defaultInput(buyer2, seller2);
        Settlement.TradeInput memory c = defaultInput(buyer, seller2);
        Settlement.TradeInput[] memory inputs = new Settlement.TradeInput[](3);
        (inputs[0], inputs[1], inputs[2]) = (a, shortOne, c);
        uint256 lock = settlement.lockAmount(QUANTITY, PRICE, FEE);
        bytes32 droppedId = idOf(1, shortOne);
        openRound(1);
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.TradeDropped(1, droppedId, buyer2, lock, 0);
        addTrades(1, inputs);
        assertEq(settlement.rounds(1).trades, 2, "two trades added");
        assertEq(uint256(settlement.tradeState(idOf(1, a))), uint256(Settlement.TradeState.Open), "a added");
        assertEq(uint256(settlement.tradeState(idOf(1, c))), uint256(Settlement.TradeState.Open), "c added");
        assertEq(uint256(settlement.tradeState(droppedId)), uint256(Settlement.TradeState.None), "dropped");
        assertEq(settlement.filledWh(settlement.orderHash(shortOne.buy)), 0, "a dropped trade fills nothing");
        assertEq(lockedOf(buyer), 2 * lock, "buyer locked twice");

        // Once funded, the dropped trade can still join the open round.
        fund(buyer2, lock);
        addTrade(1, shortOne);
        assertEq(uint256(settlement.tradeState(droppedId)), uint256(Settlement.TradeState.Open), "added later");
        assertEq(freeOf(buyer2), 0, "exactly the lock");
    }

    /// Attack: the buyer withdraws money locked by an open trade (the seller then delivers
    /// unpaid); also while paused.
    function test_RevertIf_BuyerWithdrawsLockedMoney() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        uint256 free = freeOf(buyer);
        assertEq(free, BUYER_FUNDS - lockOf(t), "free = funds - lock");
        vm.expectRevert(abi.encodeWithSelector(Settlement.InsufficientBalance.selector, buyer, free + 1, free));
        vm.prank(buyer);
        settlement.withdraw(free + 1);
        vm.prank(admin);
        settlement.pause();
        vm.prank(buyer);
        settlement.withdraw(free);
        vm.expectRevert(abi.encodeWithSelector(Settlement.InsufficientBalance.selector, buyer, 1, 0));
        vm.prank(buyer);
        settlement.withdraw(1);
        assertEq(lockedOf(buyer), lockOf(t), "lock intact");
        assertEq(payment.balanceOf(address(settlement)), lockOf(t), "the contract still holds it");
    }

    // ============================================================ batches

    /// Attack: one unsettleable trade in an attestation batch (unknown record, already
    /// final, round not sealed) reverts the batch and so blocks all others: now it is
    /// skipped and the rest settle.
    function test_AttestBatchSkipsUnsettleableAndSettlesRest() public {
        fund(buyer2, BUYER_FUNDS);
        Settlement.TradeInput[] memory inputs = new Settlement.TradeInput[](3);
        (inputs[0], inputs[1], inputs[2]) =
            (defaultInput(buyer, seller), defaultInput(buyer2, seller2), defaultInput(buyer, seller2));
        Settlement.Trade[] memory r1 = runRound(1, inputs);
        (Settlement.Trade memory a, Settlement.Trade memory b, Settlement.Trade memory done) = (r1[0], r1[1], r1[2]);
        voteBy(3, done, QUANTITY);
        openRound(2);
        Settlement.TradeInput memory pendingInput = defaultInput(buyer2, seller);
        addTrade(2, pendingInput);
        Settlement.Trade memory unsealed = recordOf(2, pendingInput);
        Settlement.Trade memory forged = copyOf(a);
        forged.priceMicroEurPerKwh = BUY_LIMIT; // overpay the seller
        voteBy(2, a, QUANTITY);
        voteBy(2, b, QUANTITY);

        Settlement.Trade[] memory batch = new Settlement.Trade[](5);
        (batch[0], batch[1], batch[2], batch[3], batch[4]) = (forged, done, unsealed, a, b);
        uint64[] memory whs = new uint64[](5);
        (whs[0], whs[1], whs[2], whs[3], whs[4]) = (QUANTITY, 0, 0, QUANTITY, QUANTITY);
        address v = validatorAt(2);
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.VoteSkipped(idOf(forged), v, Settlement.SkipReason.UnknownTrade);
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.VoteSkipped(idOf(done), v, Settlement.SkipReason.TradeFinal);
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.VoteSkipped(idOf(unsealed), v, Settlement.SkipReason.RoundNotSealed);
        vm.prank(v);
        settlement.attestBatch(batch, whs);

        assertEq(uint256(stateOf(a)), uint256(Settlement.TradeState.Settled), "a settled");
        assertEq(uint256(stateOf(b)), uint256(Settlement.TradeState.Settled), "b settled");
        assertEq(uint256(stateOf(unsealed)), uint256(Settlement.TradeState.Open), "unsealed untouched");
        assertEq(freeOf(seller), uint256(QUANTITY) * PRICE / 1000, "seller paid at the signed price");
        assertEq(settlement.totalPaidWh(), 3 * uint256(QUANTITY), "three trades paid");
    }

    /// Attack: a batch of attestations of different length than its votes.
    function test_RevertIf_AttestBatchLengthMismatch() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        vm.expectRevert(Settlement.LengthMismatch.selector);
        vm.prank(validatorAt(0));
        settlement.attestBatch(oneTrade(t), new uint64[](2));
    }

    /// Property: reclaimBatch returns what can be returned and skips the rest.
    function test_ReclaimBatchSkipsUnreclaimable() public {
        Settlement.TradeInput[] memory inputs = new Settlement.TradeInput[](2);
        (inputs[0], inputs[1]) = (defaultInput(buyer, seller), defaultInput(buyer, seller2));
        Settlement.Trade[] memory r = runRound(1, inputs);
        voteBy(3, r[0], QUANTITY);
        vm.warp(settlement.rounds(1).deadline + 1);
        Settlement.Trade memory forged = copyOf(r[1]);
        forged.buyer = mallory;
        Settlement.Trade[] memory batch = new Settlement.Trade[](3);
        (batch[0], batch[1], batch[2]) = (r[0], forged, r[1]);
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.ReclaimSkipped(idOf(r[0]), Settlement.SkipReason.TradeFinal);
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.ReclaimSkipped(idOf(forged), Settlement.SkipReason.UnknownTrade);
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.TradeReclaimed(idOf(r[1]), lockOf(r[1]));
        vm.prank(mallory);
        settlement.reclaimBatch(batch);
        assertEq(lockedOf(buyer), 0, "nothing locked");
        assertEq(freeOf(mallory), 0, "nothing to mallory");
    }

    // ============================================================ energy tokens

    /// Attack: mint energy tokens without a verified delivery (the admin, the operator, a
    /// validator or a seller calling the token directly).
    function test_RevertIf_AnyoneButSettlementMintsEnergy() public {
        assertEq(energy.minter(), address(settlement), "the settlement is the minter");
        address[5] memory callers = [admin, operator, validatorAt(0), seller, address(this)];
        for (uint256 i; i < callers.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(EnergyToken.EnergyTokenNotMinter.selector, callers[i]));
            vm.prank(callers[i]);
            energy.deliver(seller, callers[i], SLOT_START, 1e9);
        }
        assertEq(energy.balanceOf(seller, SLOT_START), 0, "nothing minted");
    }

    // ============================================================ phases

    /// Attack: vote a trade while the operator may still add to its round (before seal).
    function test_RevertIf_VoteBeforeSeal() public {
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        openRound(1);
        addTrade(1, input);
        Settlement.Trade memory t = recordOf(1, input);
        vm.expectRevert(abi.encodeWithSelector(Settlement.RoundNotSealed.selector, uint64(1)));
        vote(validatorAt(0), t, QUANTITY);
    }

    /// Attack: vote after the deadline (when the buyer may already reclaim).
    function test_RevertIf_VoteAfterDeadline() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        uint64 deadline = settlement.rounds(1).deadline;
        vm.warp(deadline);
        vote(validatorAt(0), t, QUANTITY); // the deadline itself still counts
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.AttestationClosed.selector, uint64(1), deadline));
        vote(validatorAt(1), t, QUANTITY);
    }

    /// Attack: a validator votes on a tampered record (a higher price for the seller).
    function test_RevertIf_VoteOnTamperedRecord() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        t.priceMicroEurPerKwh = BUY_LIMIT;
        vm.expectRevert(abi.encodeWithSelector(Settlement.UnknownTrade.selector, idOf(t)));
        vote(validatorAt(0), t, QUANTITY);
    }

    /// Attack: the buyer reclaims its lock before the deadline, while validators still vote.
    function test_RevertIf_ReclaimBeforeDeadline() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        uint64 deadline = settlement.rounds(1).deadline;
        vm.expectRevert(abi.encodeWithSelector(Settlement.DeadlineNotPassed.selector, uint64(1), deadline));
        vm.prank(buyer);
        settlement.reclaim(t);
        vm.warp(deadline);
        vm.expectRevert(abi.encodeWithSelector(Settlement.DeadlineNotPassed.selector, uint64(1), deadline));
        vm.prank(buyer);
        settlement.reclaim(t);
    }

    /// Property: after the deadline anyone returns exactly the lock (rounded up) to the
    /// buyer, once; a reclaim with a tampered record (buyer = mallory) is refused.
    function test_ReclaimAfterDeadlineRefundsExactlyTheLock() public {
        Settlement.Order memory buy = makeOrder(buyer, true, 333, BUY_LIMIT, MAX_FEE);
        Settlement.TradeInput memory input = tradeInput(buy, sellOrder(seller, 333), 333, 250_001, 1);
        Settlement.Trade memory t = runRound(1, one(input))[0];
        uint256 lock = lockOf(t);
        assertEq(lock, 83_251, "333 Wh x 250 002 / 1000, rounded up");
        assertEq(freeOf(buyer), BUYER_FUNDS - lock, "locked");
        vm.warp(settlement.rounds(1).deadline + 1);

        Settlement.Trade memory forged = copyOf(t);
        forged.buyer = mallory;
        vm.expectRevert(abi.encodeWithSelector(Settlement.UnknownTrade.selector, idOf(forged)));
        vm.prank(mallory);
        settlement.reclaim(forged);

        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.TradeReclaimed(idOf(t), lock);
        vm.prank(mallory);
        settlement.reclaim(t);
        assertEq(freeOf(buyer), BUYER_FUNDS, "exactly the lock returned");
        assertEq(lockedOf(buyer), 0, "nothing locked");
        assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Reclaimed), "reclaimed");
        vm.expectRevert(abi.encodeWithSelector(Settlement.TradeNotOpen.selector, idOf(t)));
        settlement.reclaim(t);
    }

    /// Attack: reclaim a settled trade's lock a second time (paid twice).
    function test_RevertIf_ReclaimSettledTrade() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        voteBy(3, t, QUANTITY);
        vm.warp(settlement.rounds(1).deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.TradeNotOpen.selector, idOf(t)));
        settlement.reclaim(t);
    }

    /// Attack: a pause is used to move money: while paused no deposit, round, vote or
    /// reclaim goes through, withdrawals of free money do; only the pauser pauses.
    function test_PauseStopsEverythingButWithdrawals() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, operator, settlement.PAUSER_ROLE()
            )
        );
        vm.prank(operator);
        settlement.pause();
        vm.prank(admin);
        settlement.pause();

        bytes4 paused = bytes4(keccak256("EnforcedPause()"));
        vm.expectRevert(paused);
        vote(validatorAt(0), t, QUANTITY);
        vm.expectRevert(paused);
        openRound(2);
        vm.expectRevert(paused);
        vm.prank(buyer);
        settlement.deposit(1);
        // The admin may extend the deadline the pause ate into.
        uint64 deadline = settlement.rounds(1).deadline;
        vm.prank(admin);
        settlement.extendDeadline(1, deadline + 1 days);
        vm.warp(deadline + 1 days + 1);
        vm.expectRevert(paused);
        settlement.reclaim(t);
        uint256 free = freeOf(buyer);
        vm.prank(buyer);
        settlement.withdraw(free);

        vm.prank(admin);
        settlement.unpause();
        settlement.reclaim(t);
        assertEq(freeOf(buyer), lockOf(t), "lock back after the pause");
    }
}
