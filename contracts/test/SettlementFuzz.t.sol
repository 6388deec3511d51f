// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SettlementFixture, Reference} from "./SettlementFixture.sol";
import {Settlement} from "../src/Settlement.sol";
import {EnergyToken} from "../src/EnergyToken.sol";
import {ValidatorRegistry} from "../src/ValidatorRegistry.sol";

/// Fuzzed arithmetic and rules, each checked against the independent {Reference} model.
/// Inputs are mapped into range with bound(), never discarded.
contract SettlementFuzzTest is SettlementFixture {
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    /// Property: lockAmount = ceil(q x (price + fee) / 1000) over the whole uint64 range.
    function testFuzz_LockAmountRoundsUp(uint64 quantityWh, uint64 price, uint64 fee) public view {
        uint256 lock = settlement.lockAmount(quantityWh, price, fee);
        uint256 exact = uint256(quantityWh) * (uint256(price) + fee);
        assertEq(lock, Reference.lockAmount(quantityWh, price, fee), "reference");
        assertGe(lock * 1000, exact, "covers the trade");
        assertTrue(lock * 1000 < exact + 1000, "by less than one unit");
    }

    /// Property: addTrades moves exactly lockAmount from the buyer's free to its locked
    /// balance, and nothing else.
    function testFuzz_AddTradeLocksExactly(uint256 qSeed, uint256 priceSeed, uint256 feeSeed) public {
        uint64 q = uint64(bound(qSeed, 1, 1e9));
        uint64 fee = uint64(bound(feeSeed, 0, 1e7));
        uint64 price = uint64(bound(priceSeed, 0, 1e9));
        uint256 lock = Reference.lockAmount(q, price, fee);
        if (lock > 0) fund(buyer, lock); // price = fee = 0 locks nothing
        Settlement.Order memory buy = makeOrder(buyer, true, q, price + fee, fee);
        Settlement.Order memory sell = makeOrder(seller, false, q, price, 0);
        openRound(1);
        addTrade(1, tradeInput(buy, sell, q, price, fee));
        assertEq(lockedOf(buyer), lock, "locked");
        assertEq(freeOf(buyer), BUYER_FUNDS, "free");
        assertEq(payment.balanceOf(address(settlement)), BUYER_FUNDS + lock, "held");
    }

    /// Property: a trade is accepted iff sell.limit <= price, price + fee <= buy.limit and
    /// fee <= buy.maxFee; otherwise PriceOutsideLimits.
    function testFuzz_PriceLimits(
        uint256 priceSeed,
        uint256 feeSeed,
        uint256 buyLimitSeed,
        uint256 maxFeeSeed,
        uint256 sellLimitSeed
    ) public {
        uint64 price = uint64(bound(priceSeed, 0, 1e6));
        uint64 fee = uint64(bound(feeSeed, 0, 1e6));
        uint64 buyLimit = uint64(bound(buyLimitSeed, 0, 2e6));
        uint64 maxFee = uint64(bound(maxFeeSeed, 0, 1e6));
        uint64 sellLimit = uint64(bound(sellLimitSeed, 0, 1e6));
        Settlement.Order memory buy = makeOrder(buyer, true, QUANTITY, buyLimit, maxFee);
        Settlement.Order memory sell = makeOrder(seller, false, QUANTITY, sellLimit, 0);
        Settlement.TradeInput memory input = tradeInput(buy, sell, QUANTITY, price, fee);
        bytes32 id = idOf(1, input);
        openRound(1);
        bool within = sellLimit <= price && uint256(price) + fee <= buyLimit && fee <= maxFee;
        if (!within) vm.expectRevert(abi.encodeWithSelector(Settlement.PriceOutsideLimits.selector, id));
        addTrade(1, input);
        Settlement.TradeState expected = within ? Settlement.TradeState.Open : Settlement.TradeState.None;
        assertEq(uint256(settlement.tradeState(id)), uint256(expected), "accepted iff within the limits");
    }

    /// Property: fills of one order over chunks are accepted while their sum stays within
    /// the order's quantity; the first one beyond it reverts with OrderOverfilled.
    function testFuzz_OverfillRefused(uint256 qSeed, uint256 f1, uint256 f2, uint256 f3) public {
        uint64 q = uint64(bound(qSeed, 1, 1e6));
        uint64[3] memory fills = [uint64(bound(f1, 1, q)), uint64(bound(f2, 1, q)), uint64(bound(f3, 1, q))];
        Settlement.Order memory buy = buyOrder(buyer, q);
        bytes32 buyHash = settlement.orderHash(buy);
        openRound(1);
        bool bound_ = false;
        uint64 filled = 0;
        for (uint256 i; i < 3; ++i) {
            Settlement.TradeInput memory input = tradeInput(buy, sellOrder(seller, q), fills[i], PRICE, FEE);
            bool over = uint256(filled) + fills[i] > q;
            if (over) vm.expectRevert(abi.encodeWithSelector(Settlement.OrderOverfilled.selector, buyHash, filled, q));
            addTrade(1, input);
            if (!over) (filled, bound_) = (filled + fills[i], true);
            Settlement.OrderUse memory use = settlement.orderUse(buyer, buy.nonce);
            assertEq(use.filledWh, filled, "filled");
            assertEq(bytes32(use.orderHash), bound_ ? bytes32(bytes24(buyHash)) : bytes32(0), "nonce bound");
        }
    }

    /// Property: settlement splits the lock exactly: payment + fee + refund == lock, with
    /// payment = price x min(q, verified) / 1000 (rounded down, never more), fee likewise,
    /// and min(q, verified) energy tokens to the buyer.
    function testFuzz_SettlementSplitsTheLock(uint256 qSeed, uint256 priceSeed, uint256 feeSeed, uint256 whSeed)
        public
    {
        uint64 q = uint64(bound(qSeed, 1, 1e9));
        uint64 price = uint64(bound(priceSeed, 0, 1e9));
        uint64 fee = uint64(bound(feeSeed, 0, 1e7));
        uint64 verified = uint64(bound(whSeed, 0, 2 * uint256(q)));
        uint256 lock = Reference.lockAmount(q, price, fee);
        if (lock > 0) fund(buyer, lock); // price = fee = 0 locks nothing
        Settlement.Order memory buy = makeOrder(buyer, true, q, price + fee, fee);
        Settlement.Order memory sell = makeOrder(seller, false, q, price, 0);
        Settlement.Trade memory t = runRound(1, one(tradeInput(buy, sell, q, price, fee)))[0];
        voteBy(3, t, verified);

        uint256 paidWh = Reference.min(q, verified);
        uint256 toSeller = freeOf(seller);
        uint256 toFees = freeOf(fees);
        uint256 refund = freeOf(buyer) - BUYER_FUNDS;
        assertEq(toSeller + toFees + refund, lock, "payment + fee + refund == lock");
        assertEq(toSeller, paidWh * price / 1000, "payment");
        assertLe(toSeller * 1000, uint256(price) * paidWh, "seller paid at most price x min(q, verified)");
        assertEq(toFees, paidWh * fee / 1000, "fee");
        assertEq(lockedOf(buyer), 0, "unlocked");
        assertEq(energy.balanceOf(buyer, SLOT_START), paidWh, "energy");
        assertEq(settlement.totalPaidWh(), paidWh, "total paid Wh");
        assertEq(payment.balanceOf(address(settlement)), BUYER_FUNDS + lock, "nothing left the contract");
    }

    /// Property: for random vote sets, validator counts (1..7) and tolerances (0..100 per
    /// mille), a set of signed votes (submitted in a random order) settles exactly when a
    /// quorum of them agrees within the tolerance, and pays the lower median of the
    /// largest agreeing group (capped at the quantity); a smaller set reverts with NoQuorum
    /// and the number of agreeing votes. Checked for every prefix of the votes.
    function testFuzz_AgreementMedianRule(uint256 seed, uint256 n, uint256 tolerance, uint256 q) public {
        // The arguments are seeds, mapped into range in place.
        tolerance = bound(tolerance, 0, 100);
        deploy(uint64(tolerance));
        n = bound(n, 1, 7);
        registerValidators(n);
        fund(buyer, BUYER_FUNDS);
        q = bound(q, 1, 1e6);
        Settlement.Trade memory t = runRound(
            1, one(tradeInput(buyOrder(buyer, uint64(q)), sellOrder(seller, uint64(q)), uint64(q), PRICE, FEE))
        )[0];
        uint256 tolWh = Reference.toleranceWh(q, tolerance);
        uint64[] memory values = randomVotes(seed, n, uint64(q), tolWh);
        Settlement.SignedVote[] memory signed = votesOf(t, values);

        assertEq(registry.quorum(), Reference.quorum(n), "quorum");
        bool settled = false;
        for (uint256 i; i < n && !settled; ++i) {
            settled = submitPrefix(t, values, signed, i + 1, tolWh, uint256(keccak256(abi.encode(seed, "order", i))));
        }
        if (!settled) assertEq(freeOf(seller), 0, "no agreement: nothing paid");
    }

    /// Submits the first `k` signed votes in a shuffled order and checks the outcome
    /// against the reference rule; returns whether the trade settled.
    function submitPrefix(
        Settlement.Trade memory t,
        uint64[] memory values,
        Settlement.SignedVote[] memory signed,
        uint256 k,
        uint256 tolWh,
        uint256 orderSeed
    ) internal returns (bool settled) {
        uint64[] memory cast = new uint64[](k);
        Settlement.SignedVote[] memory submitted = new Settlement.SignedVote[](k);
        for (uint256 j; j < k; ++j) {
            cast[j] = values[j];
            submitted[j] = signed[j];
        }
        shuffle(submitted, orderSeed);
        (uint256 size, uint64 median) = Reference.agreement(cast, tolWh);
        settled = size >= registry.quorum();
        if (!settled) vm.expectRevert(noQuorum(t, size));
        settle(t, submitted);
        Settlement.TradeState expected = settled ? Settlement.TradeState.Settled : Settlement.TradeState.Open;
        assertEq(uint256(stateOf(t)), uint256(expected), "settles exactly at quorum agreement");
        if (settled) {
            uint256 paidWh = Reference.min(median, t.quantityWh);
            assertEq(settlement.totalPaidWh(), paidWh, "median paid");
            assertEq(freeOf(seller), paidWh * PRICE / 1000, "seller paid for the median");
            assertEq(energy.balanceOf(buyer, SLOT_START), paidWh, "energy for the median");
        }
    }

    /// Property: only the votes of validators registered now count. Seven validators sign
    /// random votes, a random subset of them is revoked (at least one stays) and an
    /// outsider signs too; the whole set settles or reverts with NoQuorum exactly as the
    /// reference rule over the current validators' votes says, and settlement and
    /// settleBatch agree.
    function testFuzz_OnlyCurrentValidatorsCount(uint256 seed, uint256 revokeMask, uint256 qSeed, bool batch) public {
        registerValidators(7);
        uint64 q = uint64(bound(qSeed, 1, 1e6));
        Settlement.Trade memory t =
            runRound(1, one(tradeInput(buyOrder(buyer, q), sellOrder(seller, q), q, PRICE, FEE)))[0];
        uint64[] memory values = randomVotes(seed, 7, q, Reference.toleranceWh(q, TOLERANCE_PER_MILLE));
        uint64[] memory current = revokeSome(values, revokeMask);
        Settlement.SignedVote[] memory votes =
            withVote(votesOf(t, values), signedVoteByKey(MALLORY_KEY, t, uint64(bound(seed, 0, q))));
        shuffle(votes, seed >> 8);
        (uint256 size, uint64 median) = Reference.agreement(current, Reference.toleranceWh(q, TOLERANCE_PER_MILLE));
        bool settles = size >= Reference.quorum(current.length);
        if (batch) {
            if (!settles) {
                vm.expectEmit(true, true, true, true, address(settlement));
                emit Settlement.SettleSkipped(idOf(t), Settlement.SkipReason.NoQuorum);
            }
            settlement.settleBatch(oneTrade(t), oneVoteSet(votes));
        } else {
            if (!settles) vm.expectRevert(noQuorum(t, size));
            settle(t, votes);
        }
        assertEq(settlement.totalPaidWh(), settles ? Reference.min(median, q) : 0, "median of current votes");
        assertEq(lockedOf(buyer), settles ? 0 : lockOf(t), "unlocked iff settled");
    }

    /// Revokes validator i of 0..6 where bit i of `mask` is set (keeping at least one);
    /// returns the values of those still registered.
    function revokeSome(uint64[] memory values, uint256 mask) internal returns (uint64[] memory current) {
        current = new uint64[](values.length);
        uint256 m = 0;
        for (uint256 i; i < values.length; ++i) {
            if ((mask >> i) & 1 == 1 && registry.count() > 1) revokeValidator(validatorAt(i));
            else current[m++] = values[i];
        }
        assembly ("memory-safe") {
            mstore(current, m)
        }
    }

    /// Attack: one vote of an otherwise valid quorum set is corrupted (random signature
    /// bytes, another value than signed, signed for another trade id, for another
    /// deployment, without the domain, by another key, the malleable twin, or the same
    /// validator twice): settleTrade reverts with InvalidVote naming that validator,
    /// settleBatch skips the trade with InvalidVote, and the uncorrupted set settles.
    function testFuzz_RevertIf_CorruptedVoteInSet(uint256 nSeed, uint256 posSeed, uint256 kindSeed, uint256 whSeed)
        public
    {
        uint256 n = bound(nSeed, 3, 7);
        registerValidators(n);
        Settlement.Trade memory t = sealedDefaultTrade(1);
        uint64 wh = uint64(bound(whSeed, 0, 2 * uint256(QUANTITY)));
        Settlement.SignedVote[] memory votes = votesBy(n, t, wh);
        Settlement.SignedVote[] memory bad = corrupted(votes, t, bound(posSeed, 0, n - 1), bound(kindSeed, 0, 7));
        address named = bad[bound(posSeed, 0, n - 1)].validator;
        vm.expectRevert(invalidVote(t, named));
        settle(t, bad);
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.SettleSkipped(idOf(t), Settlement.SkipReason.InvalidVote);
        settlement.settleBatch(oneTrade(t), oneVoteSet(bad));
        assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Open), "still open");
        settle(t, votes);
        assertEq(settlement.totalPaidWh(), Reference.min(wh, QUANTITY), "the valid set settles");
    }

    /// A copy of `votes` with the vote at `pos` corrupted in the way `kind` (0..7) names;
    /// kind 7 (a duplicate) replaces the vote at `pos` by a second, properly signed vote of
    /// the validator before it (at position 0: the vote at 0 becomes a second vote of the
    /// validator at 1, so the set names that validator at position 1).
    function corrupted(Settlement.SignedVote[] memory votes, Settlement.Trade memory t, uint256 pos, uint256 kind)
        internal
        returns (Settlement.SignedVote[] memory bad)
    {
        bad = new Settlement.SignedVote[](votes.length);
        for (uint256 i; i < votes.length; ++i) {
            bad[i] = Settlement.SignedVote(votes[i].validator, votes[i].epoch, votes[i].deliveredWh, votes[i].signature);
        }
        Settlement.SignedVote memory v = bad[pos];
        bytes32 id = idOf(t);
        uint256 key = validatorKeyOf(v.validator);
        if (kind == 0) {
            v.signature = abi.encodePacked(keccak256(abi.encode(pos)), keccak256(abi.encode(kind)), uint8(27));
        } else if (kind == 1) {
            v.deliveredWh += 1;
        } else if (kind == 2) {
            v.signature = signVote(key, keccak256(abi.encode(id)), v.deliveredWh);
        } else if (kind == 3) {
            Settlement other = new Settlement(admin, payment, registry, fees, TOLERANCE_PER_MILLE);
            v.signature = signVoteFor(other, key, id, v.deliveredWh);
        } else if (kind == 4) {
            (uint8 pv, bytes32 r, bytes32 s) =
                vm.sign(key, keccak256(abi.encode(settlement.ATTESTATION_TYPEHASH(), id, v.deliveredWh, v.epoch)));
            v.signature = abi.encodePacked(r, s, pv);
        } else if (kind == 5) {
            v.signature = signVote(MALLORY_KEY, id, v.deliveredWh);
        } else if (kind == 6) {
            (uint8 pv, bytes32 r, bytes32 s) = vm.sign(key, settlement.attestationHash(id, v.deliveredWh, v.epoch));
            v.signature = abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), pv == 27 ? uint8(28) : uint8(27));
        } else {
            uint256 other = pos == 0 ? 1 : pos - 1;
            if (pos == 0) (bad[0], bad[1]) = (bad[1], bad[0]); // the validator at 1 now comes first
            uint256 dupOf = pos == 0 ? 0 : other;
            uint256 dupKey = validatorKeyOf(bad[dupOf].validator);
            bad[pos == 0 ? 1 : pos] = Settlement.SignedVote(
                bad[dupOf].validator,
                bad[dupOf].epoch,
                bad[dupOf].deliveredWh,
                signVote(dupKey, id, bad[dupOf].deliveredWh)
            );
            if (pos == 0) (bad[0], bad[1]) = (bad[1], bad[0]);
        }
    }

    /// The key of validator account `v` (one of validators 0..9).
    function validatorKeyOf(address v) internal pure returns (uint256) {
        for (uint256 i; i < 10; ++i) {
            if (validatorAt(i) == v) return validatorKey(i);
        }
        revert("not a validator");
    }

    /// Fisher-Yates shuffle of `votes` in place.
    function shuffle(Settlement.SignedVote[] memory votes, uint256 seed) internal pure {
        for (uint256 i = votes.length; i > 1; --i) {
            uint256 j = uint256(keccak256(abi.encode(seed, i))) % i;
            (votes[i - 1], votes[j]) = (votes[j], votes[i - 1]);
        }
    }

    /// Votes clustered around a random centre (within twice the tolerance), one in four
    /// an outlier anywhere in [0, 3q].
    function randomVotes(uint256 seed, uint256 n, uint64 q, uint256 tolWh) internal pure returns (uint64[] memory v) {
        v = new uint64[](n);
        uint256 centre = bound(uint256(keccak256(abi.encode(seed, "centre"))), 0, 2 * uint256(q));
        for (uint256 i; i < n; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            if (r % 4 == 0) {
                v[i] = uint64(bound(r >> 8, 0, 3 * uint256(q)));
            } else {
                uint256 offset = bound(r >> 8, 0, 4 * tolWh);
                uint256 low = centre + offset;
                v[i] = uint64(low < 2 * tolWh ? 0 : low - 2 * tolWh);
            }
        }
    }

    /// Property: after the deadline the lock returns exactly, however late, paused or not,
    /// and no energy is minted; a minority's votes submitted before do not matter, and
    /// the quorum's votes signed before the deadline cannot settle it afterwards.
    function testFuzz_ReclaimRefundsExactlyTheLock(
        uint256 qSeed,
        uint256 priceSeed,
        uint256 feeSeed,
        uint256 lateSeed,
        uint256 whSeed
    ) public {
        uint64 q = uint64(bound(qSeed, 1, 1e6));
        uint64 fee = uint64(bound(feeSeed, 0, MAX_FEE));
        uint64 price = uint64(bound(priceSeed, SELL_LIMIT, BUY_LIMIT - fee));
        Settlement.Trade memory t =
            runRound(1, one(tradeInput(buyOrder(buyer, q), sellOrder(seller, q), q, price, fee)))[0];
        uint64 wh = uint64(bound(whSeed, 0, q));
        Settlement.SignedVote[] memory alone = votesBy(1, t, wh);
        vm.expectRevert(noQuorum(t, 1));
        settle(t, alone);
        Settlement.SignedVote[] memory quorum = votesBy(3, t, wh);
        assertEq(freeOf(buyer), BUYER_FUNDS - Reference.lockAmount(q, price, fee), "locked");
        uint64 deadline = settlement.rounds(1).deadline;
        vm.warp(deadline + bound(lateSeed, 1, 365 days));
        if (lateSeed % 2 == 0) {
            vm.prank(admin);
            settlement.pause();
        } else {
            vm.expectRevert(abi.encodeWithSelector(Settlement.AttestationClosed.selector, uint64(1), deadline));
            settle(t, quorum);
        }
        vm.prank(mallory);
        settlement.reclaim(t);
        assertEq(freeOf(buyer), BUYER_FUNDS, "exactly the lock back");
        assertEq(lockedOf(buyer), 0, "unlocked");
        assertEq(freeOf(seller), 0, "seller unpaid");
        assertEq(settlement.totalPaidWh(), 0, "no energy");
    }

    /// Property: extendDeadline succeeds iff the deadline has not passed, the new one is
    /// later, at most 7 days later, and not beyond the round's earliest order expiry.
    function testFuzz_ExtendDeadlineRule(uint256 expirySeed, uint256 extensionSeed, uint256 warpSeed) public {
        uint64 deadline = uint64(block.timestamp) + 1 days;
        uint64 expiry = deadline + uint64(bound(expirySeed, 0, 20 days));
        Settlement.Order memory buy = buyOrder(buyer, QUANTITY);
        Settlement.Order memory sell = sellOrder(seller, QUANTITY);
        (buy.expiry, sell.expiry) = (expiry, expiry);
        openRound(1, deadline);
        addTrade(1, tradeInput(buy, sell, QUANTITY, PRICE, FEE));
        vm.warp(block.timestamp + bound(warpSeed, 0, 2 days));
        uint64 newDeadline = deadline + uint64(bound(extensionSeed, 0, 10 days));
        bool valid = block.timestamp <= deadline && newDeadline > deadline && newDeadline <= deadline + 7 days
            && newDeadline <= expiry;
        if (!valid) {
            vm.expectRevert(abi.encodeWithSelector(Settlement.InvalidDeadline.selector, uint64(1), newDeadline));
        }
        vm.prank(admin);
        settlement.extendDeadline(1, newDeadline);
        assertEq(settlement.rounds(1).deadline, valid ? newDeadline : deadline, "deadline");
    }

    /// Property: with n registered validators (after any revocations) the quorum is the
    /// least number strictly above 2n/3.
    function testFuzz_QuorumStrictlyAboveTwoThirds(uint256 nSeed, uint256 revokedSeed) public {
        ValidatorRegistry fresh = new ValidatorRegistry(admin);
        uint256 n = bound(nSeed, 1, 60);
        uint256 revoked = bound(revokedSeed, 0, n - 1);
        vm.startPrank(admin);
        for (uint256 i; i < n; ++i) {
            fresh.register(validatorAt(i));
        }
        for (uint256 i; i < revoked; ++i) {
            fresh.revoke(validatorAt(i));
        }
        vm.stopPrank();
        uint256 m = n - revoked;
        uint256 q = fresh.quorum();
        assertEq(fresh.count(), m, "count");
        assertTrue(3 * q > 2 * m, "more than two thirds");
        assertTrue(3 * (q - 1) <= 2 * m, "the least such number");
    }

    /// Attack: anyone but the settlement contract mints energy tokens.
    function testFuzz_RevertIf_AnyoneButSettlementMintsEnergy(address caller, uint256 slot, uint256 wh) public {
        if (caller == address(settlement)) caller = address(uint160(caller) ^ 1);
        vm.expectRevert(abi.encodeWithSelector(EnergyToken.EnergyTokenNotMinter.selector, caller));
        vm.prank(caller);
        energy.deliver(caller, caller, slot, wh);
    }

    /// Attack: the buyer withdraws any amount beyond its free balance while a trade locks
    /// part of its money.
    function testFuzz_WithdrawOnlyFreeBalance(uint256 amountSeed) public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        uint256 free = BUYER_FUNDS - lockOf(t);
        uint256 amount = bound(amountSeed, 1, BUYER_FUNDS);
        if (amount > free) {
            vm.expectRevert(abi.encodeWithSelector(Settlement.InsufficientBalance.selector, buyer, amount, free));
        }
        vm.prank(buyer);
        settlement.withdraw(amount);
        assertEq(lockedOf(buyer), lockOf(t), "lock untouched");
        assertEq(payment.balanceOf(buyer), amount > free ? 0 : amount, "withdrawn");
    }

    /// Attack: trades are added to, or the round sealed, any time after its deadline
    /// (RoundExpired); up to the deadline itself both work.
    function testFuzz_RevertIf_AddOrSealAfterDeadline(uint256 durationSeed, uint256 warpSeed) public {
        uint64 deadline = uint64(block.timestamp + bound(durationSeed, 1, 5 days));
        openRound(1, deadline);
        uint256 when = bound(warpSeed, block.timestamp, uint256(deadline) + 30 days);
        vm.warp(when);
        Settlement.TradeInput memory input = defaultInput(buyer, seller);
        bool late = when > deadline;
        bytes memory expired = abi.encodeWithSelector(Settlement.RoundExpired.selector, uint64(1), deadline);
        if (late) vm.expectRevert(expired);
        addTrade(1, input);
        if (late) vm.expectRevert(expired);
        seal(1);
        assertEq(lockedOf(buyer), late ? 0 : lockOf(recordOf(1, input)), "locked iff added");
        assertEq(filledOf(input.buy), late ? 0 : QUANTITY, "filled iff added");
        Settlement.RoundStatus status = late ? Settlement.RoundStatus.Open : Settlement.RoundStatus.Sealed;
        assertEq(uint256(settlement.rounds(1).status), uint256(status), "sealed iff in time");
    }
}
