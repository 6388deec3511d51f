// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase, Vm} from "../Vm.sol";
import {Reference} from "../SettlementFixture.sol";
import {PaymentToken} from "../../src/PaymentToken.sol";
import {EnergyToken} from "../../src/EnergyToken.sol";
import {Settlement} from "../../src/Settlement.sol";
import {ValidatorRegistry} from "../../src/ValidatorRegistry.sol";

/// The invariant campaign's only target. Every public function is one action of a
/// participant, the operator, a relayer submitting validators' signed votes, the admin or
/// time, with fuzzed arguments mapped into range (bound, actors by bound(seed, 0, n - 1)).
/// It never reverts (fail_on_revert = true): it only calls the contract with arguments
/// its model says are valid, so an unexpected revert is a finding; attack attempts and
/// calls the model expects to fail go through try/catch and count in
/// ghost_attacksAccepted when they are not refused, in ghost_wrongError when refused with
/// another error than the model's. It keeps a model of orders, trades and states, builds
/// vote sets (random subsets of a validator pool whose members it registers and revokes,
/// an outsider, random values, corrupted votes) and compares every event the contract
/// emits with the model's prediction (ghost_modelMismatch).
contract SettlementHandler is TestBase {
    uint256 internal constant N_BUYERS = 3;
    uint256 internal constant N_SELLERS = 3;
    uint256 internal constant N_VALIDATORS = 5;
    uint256 internal constant VALIDATOR_KEY_BASE = 0x7A1000;
    /// Signs votes too, but is never registered.
    uint256 internal constant OUTSIDER_KEY = 0xBAD000;
    /// Signs votes in other accounts' names (a forger).
    uint256 internal constant FORGER_KEY = 0xBAD001;
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    uint64 internal constant SLOT_LENGTH = 15 minutes;

    uint8 internal constant EXPECT_SETTLED = 1;
    uint8 internal constant EXPECT_SETTLE_SKIPPED = 2;
    uint8 internal constant EXPECT_RECLAIMED = 3;
    uint8 internal constant EXPECT_RECLAIM_SKIPPED = 4;

    PaymentToken public immutable payment;
    ValidatorRegistry public immutable registry;
    Settlement public immutable settlement;
    EnergyToken public immutable energy;
    /// Another deployment (same registry): its domain's signatures must not count here.
    Settlement public immutable otherSettlement;
    /// The deployment's agreement tolerance.
    uint64 public immutable tolerancePerMille;
    address public constant ADMIN = address(0xA11CE);
    address public constant OPERATOR = address(0x0FE);
    address public constant FEE_RECIPIENT = address(0xFEE);

    address[] public buyers;
    address[] public sellers;
    /// Validators 0..N_VALIDATORS-1, then the outsider: every account whose votes are signed.
    address[] public signers;
    uint256[] internal signerKeys;
    /// Buyers, sellers and the fee recipient: every account that can hold a balance.
    address[] public actors;
    uint64[2] public slots;
    mapping(address account => uint256 key) internal keyOf;
    mapping(address account => uint256 indexPlusOne) internal buyerIndex;

    /// A signed order and how much of it accepted trades (plus trades being planned) fill.
    struct BookOrder {
        Settlement.Order order;
        bytes signature;
        bytes32 hash;
        uint64 filled;
        bool cancelled;
    }

    BookOrder[] internal book;
    mapping(address participant => uint64 nonce) internal nextNonce;

    struct TradeInfo {
        Settlement.Trade record;
        bytes32 id;
        uint256 lock;
    }

    TradeInfo[] internal trades;
    mapping(bytes32 tradeId => uint256 indexPlusOne) internal tradeIndex;

    mapping(bytes32 tradeId => Settlement.TradeState) public modelState;
    uint64[] internal roundIds;

    /// One event the model expects from the call under way.
    struct Expect {
        uint8 kind;
        bytes32 id;
        uint64 verifiedWh;
        uint8 reason;
    }

    /// A vote set for one trade and what the model makes of it.
    struct VoteSet {
        Settlement.SignedVote[] votes;
        /// One vote is corrupted: the set is invalid and `invalidValidator` named first.
        bool invalid;
        address invalidValidator;
    }

    uint256 public currentTime;
    /// The Delivered event the last settlement must be followed by (its hash), or 0.
    bytes32 internal _pendingDelivery;

    // ------------------------------------------------------------ ghosts
    uint256 public ghost_minted;
    uint256 public ghost_deposited;
    uint256 public ghost_withdrawn;
    uint256 public ghost_whPaid;
    uint256 public ghost_paidToSellers;
    uint256 public ghost_fees;
    uint256 public ghost_added;
    uint256 public ghost_dropped;
    uint256 public ghost_settled;
    uint256 public ghost_reclaimed;
    /// Signed votes submitted (in settleTrade and settleBatch calls).
    uint256 public ghost_votes;
    /// Corrupted votes submitted.
    uint256 public ghost_corruptVotes;
    uint256 public ghost_skips;
    uint256 public ghost_extensions;
    /// Trades that emitted TradeSettled or TradeReclaimed more than once.
    uint256 public ghost_finalTwice;
    /// Settlements paying the seller more than price x min(quantity, verified) / 1000.
    uint256 public ghost_sellerOverpaid;
    /// Settlements where payment + fee + refund != lock.
    uint256 public ghost_lockNotSplit;
    /// Contract behaviour (events, states, drops) that differs from the model.
    uint256 public ghost_modelMismatch;
    /// Settlements (TradeSettled) while the trade's slot had not ended yet.
    uint256 public ghost_paidBeforeDelivery;
    /// Attack attempts (try/catch) that the contract did not refuse.
    uint256 public ghost_attacksAccepted;
    /// Attack attempts refused with another error than the expected one.
    uint256 public ghost_wrongError;
    uint256 public ghost_attacksTried;
    mapping(bytes32 tradeId => uint256) public ghost_finalEvents;

    modifier useTime() {
        vm.warp(currentTime);
        _;
    }

    /// @param tolerance The settlement's tolerance per mille (0..100).
    constructor(uint64 tolerance) {
        currentTime = block.timestamp;
        tolerancePerMille = tolerance;
        payment = new PaymentToken(ADMIN);
        registry = new ValidatorRegistry(ADMIN);
        settlement = new Settlement(ADMIN, payment, registry, FEE_RECIPIENT, tolerance);
        otherSettlement = new Settlement(ADMIN, payment, registry, FEE_RECIPIENT, tolerance);
        energy = settlement.energyToken();
        vm.startPrank(ADMIN);
        settlement.grantRole(settlement.OPERATOR_ROLE(), OPERATOR);
        for (uint256 i; i < N_VALIDATORS; ++i) {
            address v = vm.addr(VALIDATOR_KEY_BASE + i);
            signers.push(v);
            signerKeys.push(VALIDATOR_KEY_BASE + i);
            if (i < 3) registry.register(v);
        }
        vm.stopPrank();
        signers.push(vm.addr(OUTSIDER_KEY));
        signerKeys.push(OUTSIDER_KEY);
        for (uint256 i; i < N_BUYERS; ++i) {
            address b = vm.addr(0xB0B000 + i);
            (keyOf[b], buyerIndex[b]) = (0xB0B000 + i, i + 1);
            buyers.push(b);
            actors.push(b);
        }
        for (uint256 i; i < N_SELLERS; ++i) {
            address s = vm.addr(0x5E1000 + i);
            keyOf[s] = 0x5E1000 + i;
            sellers.push(s);
            actors.push(s);
        }
        actors.push(FEE_RECIPIENT);
        // Two buyers start with money for a dozen trades or so, the third with none (its
        // trades are dropped until it deposits).
        for (uint256 i = 1; i < N_BUYERS; ++i) {
            _mint(buyers[i], 2e7);
            vm.startPrank(buyers[i]);
            payment.approve(address(settlement), 2e7);
            settlement.deposit(2e7);
            vm.stopPrank();
            ghost_deposited += 2e7;
        }
        slots = [uint64(currentTime + 1 hours), uint64(currentTime + 1 hours + SLOT_LENGTH)];
    }

    // ============================================================ escrow

    /// A participant (or the fee recipient) deposits; refused while paused.
    function deposit(uint256 actorSeed, uint256 amountSeed) external useTime {
        address a = actors[bound(actorSeed, 0, actors.length - 1)];
        uint256 amount = bound(amountSeed, 1, 1e7);
        _mint(a, amount);
        vm.startPrank(a);
        payment.approve(address(settlement), amount);
        if (settlement.paused()) {
            ++ghost_attacksTried;
            try settlement.deposit(amount) {
                ++ghost_attacksAccepted;
            } catch {}
            vm.stopPrank();
            return;
        }
        settlement.deposit(amount);
        vm.stopPrank();
        ghost_deposited += amount;
    }

    /// A funder tops up two accounts in one call.
    function depositFor(uint256 funderSeed, uint256 aSeed, uint256 bSeed, uint256 amountSeed) external useTime {
        if (settlement.paused()) return;
        address funder = actors[bound(funderSeed, 0, actors.length - 1)];
        address[] memory accounts = new address[](2);
        accounts[0] = actors[bound(aSeed, 0, actors.length - 1)];
        accounts[1] = actors[bound(bSeed, 0, actors.length - 1)];
        uint256[] memory amounts = new uint256[](2);
        amounts[0] = bound(amountSeed, 1, 5e6);
        amounts[1] = bound(amountSeed >> 128, 1, 5e6);
        uint256 total = amounts[0] + amounts[1];
        _mint(funder, total);
        vm.startPrank(funder);
        payment.approve(address(settlement), total);
        settlement.depositFor(accounts, amounts);
        vm.stopPrank();
        ghost_deposited += total;
    }

    /// An account withdraws part of its free balance (also while paused), after trying
    /// to withdraw one unit more than it (money locked by open trades).
    function withdraw(uint256 actorSeed, uint256 amountSeed) external useTime {
        address a = actors[bound(actorSeed, 0, actors.length - 1)];
        uint256 free = _freeOf(a);
        ++ghost_attacksTried;
        vm.prank(a);
        try settlement.withdraw(free + 1) {
            ++ghost_attacksAccepted;
        } catch (bytes memory err) {
            if (bytes4(err) != Settlement.InsufficientBalance.selector) ++ghost_wrongError;
        }
        if (free == 0) return;
        uint256 amount = bound(amountSeed, 1, free);
        vm.prank(a);
        settlement.withdraw(amount);
        ghost_withdrawn += amount;
    }

    // ============================================================ rounds

    /// The operator opens a round, adds 1..6 trades in 1..n chunks (reusing partly filled
    /// orders across rounds and chunks; short buyers' trades are dropped) and seals it
    /// (7 times in 8).
    function runRound(uint256 seed, uint256 nSeed, uint256 chunkSeed) external useTime {
        if (settlement.paused()) return;
        uint64 roundId = uint64(roundIds.length + 1);
        // Every slot a trade may use (the latest is slots[1]) ends a voting window before
        // the deadline (else addTrades refuses it: SettlementSlotAfterDeadline).
        uint256 earliest = 6 hours;
        uint256 needed = uint256(slots[1]) + SLOT_LENGTH + settlement.MIN_VOTING_WINDOW_S();
        if (needed > currentTime + earliest) earliest = needed - currentTime;
        uint64 deadline = uint64(currentTime + bound(seed, earliest, earliest + 3 days));
        vm.prank(OPERATOR);
        settlement.openRound(roundId, keccak256(abi.encode(seed)), deadline);
        roundIds.push(roundId);
        uint256 n = bound(nSeed, 1, 6);
        Settlement.TradeInput[] memory inputs = new Settlement.TradeInput[](n);
        uint256[] memory buyIdx = new uint256[](n);
        uint256[] memory sellIdx = new uint256[](n);
        for (uint256 k; k < n; ++k) {
            (buyIdx[k], sellIdx[k]) = _planTrade(uint256(keccak256(abi.encode(seed, k))), deadline, buyIdx, sellIdx, k);
            inputs[k] = _input(buyIdx[k], sellIdx[k], uint256(keccak256(abi.encode(seed, k, "terms"))));
        }
        uint256 chunks = bound(chunkSeed, 1, n);
        uint256 start = 0;
        for (uint256 c; c < chunks; ++c) {
            uint256 end = c == chunks - 1 ? n : start + n / chunks;
            _addChunk(roundId, inputs, buyIdx, sellIdx, start, end);
            start = end;
        }
        if (uint256(keccak256(abi.encode(chunkSeed, "seal"))) % 8 != 0) {
            vm.prank(OPERATOR);
            settlement.sealRound(roundId);
        }
    }

    /// The operator seals a round left open; past its deadline the seal must be refused
    /// with RoundExpired (exact error data).
    function sealRound(uint256 roundSeed) external useTime {
        if (settlement.paused() || roundIds.length == 0) return;
        uint256 n = roundIds.length;
        uint256 start = bound(roundSeed, 0, n - 1);
        for (uint256 i; i < n; ++i) {
            uint64 id = roundIds[(start + i) % n];
            Settlement.Round memory round = settlement.rounds(id);
            if (round.status != Settlement.RoundStatus.Open) continue;
            if (currentTime > round.deadline) {
                ++ghost_attacksTried;
                vm.prank(OPERATOR);
                try settlement.sealRound(id) {
                    ++ghost_attacksAccepted;
                } catch (bytes memory err) {
                    bytes memory want = abi.encodeWithSelector(Settlement.RoundExpired.selector, id, round.deadline);
                    if (keccak256(err) != keccak256(want)) ++ghost_wrongError;
                }
                return;
            }
            vm.prank(OPERATOR);
            settlement.sealRound(id);
            return;
        }
    }

    /// The operator tries a flawed trade in an open round: forged signature, price above
    /// the buyer's limit, fee above its cap, overfill, reused nonce, cancelled order,
    /// expired order, a duplicate row or a slot ending less than the voting window before
    /// the deadline; or any chunk once the round's deadline passed (RoundExpired). Each
    /// must revert with its error.
    function attackAddTrades(uint256 seed, uint256 roundSeed) external useTime {
        if (settlement.paused() || roundIds.length == 0) return;
        (uint64 roundId, bool found) = _openRound(roundSeed);
        if (!found) return;
        uint64 deadline = settlement.rounds(roundId).deadline;
        (Settlement.TradeInput[] memory chunk, bytes4 expected) =
            _flawedChunk(uint256(keccak256(abi.encode(seed))), deadline);
        if (currentTime > deadline) expected = Settlement.RoundExpired.selector;
        else if (chunk.length == 0) return;
        ++ghost_attacksTried;
        uint32 tradesBefore = settlement.rounds(roundId).trades;
        vm.prank(OPERATOR);
        try settlement.addTrades(roundId, chunk) {
            // A withdrawn trade (expected 0): the chunk passes, the trade stays out.
            if (expected != bytes4(0) || settlement.rounds(roundId).trades != tradesBefore) {
                ++ghost_attacksAccepted;
            }
        } catch (bytes memory err) {
            if (bytes4(err) != expected) ++ghost_wrongError;
        }
    }

    /// A chunk with one flawed trade (kind picked by the seed) and the error it must
    /// raise (0: none, the trade is withdrawn); empty when the flaw cannot be built.
    function _flawedChunk(uint256 seed, uint64 deadline)
        internal
        returns (Settlement.TradeInput[] memory chunk, bytes4 expected)
    {
        address b = buyers[bound(seed, 0, N_BUYERS - 1)];
        address s = sellers[bound(seed >> 8, 0, N_SELLERS - 1)];
        uint256 kind = bound(seed >> 16, 0, 8);
        Settlement.TradeInput memory input;
        {
            uint64 slot = slots[(seed >> 24) % 2];
            input.buy = _orderOf(b, true, slot, 1000, 300_000, 40_000, deadline);
            input.sell = _orderOf(s, false, slot, 1000, 200_000, 0, deadline);
        }
        (input.quantityWh, input.priceMicroEurPerKwh, input.feeMicroEurPerKwh) = (1000, 250_000, 30_000);
        uint256 rows = 1;
        if (kind == 0) {
            expected = Settlement.InvalidOrderSignature.selector;
        } else if (kind == 1) {
            expected = Settlement.PriceOutsideLimits.selector;
            (input.priceMicroEurPerKwh, input.feeMicroEurPerKwh) = (1e12, 0);
        } else if (kind == 2) {
            expected = Settlement.PriceOutsideLimits.selector;
            (input.priceMicroEurPerKwh, input.feeMicroEurPerKwh) = (200_000, 40_001);
        } else if (kind == 3) {
            expected = Settlement.OrderOverfilled.selector;
            input.quantityWh = 1001;
            input.sell.quantityWh = 2000;
        } else if (kind == 4) {
            expected = Settlement.NonceReused.selector;
            (bool any, uint256 i) = _boundOrder(b, seed >> 32);
            if (!any) return (chunk, expected);
            input.buy.nonce = book[i].order.nonce;
            if (settlement.orderHash(input.buy) == book[i].hash) input.buy.quantityWh += 1;
        } else if (kind == 5) {
            expected = bytes4(0); // withdrawn (TradeWithdrawn), not reverted
            vm.prank(b);
            settlement.cancelOrder(input.buy.nonce);
        } else if (kind == 6) {
            expected = Settlement.OrderExpired.selector;
            input.buy.expiry = deadline - 1;
        } else if (kind == 8) {
            // Delivered after the deadline (or too close to it): its buyer could reclaim
            // the lock once the energy flowed. One second too late (slot start stays in
            // the round's orders' hours for the certificates handler: no hour check is
            // reached before the revert).
            expected = Settlement.SettlementSlotAfterDeadline.selector;
            uint64 slotEnd = deadline - settlement.MIN_VOTING_WINDOW_S() + 1;
            (input.buy.slotStart, input.buy.slotEnd) = (slotEnd - SLOT_LENGTH, slotEnd);
            (input.sell.slotStart, input.sell.slotEnd) = (slotEnd - SLOT_LENGTH, slotEnd);
        } else {
            expected = Settlement.TradeExists.selector;
            if (_freeOf(b) < settlement.lockAmount(1000, 250_000, 30_000)) return (chunk, expected);
            rows = 2;
            // Room for both rows in the orders: else the second row overfills them first.
            (input.buy.quantityWh, input.sell.quantityWh) = (2000, 2000);
        }
        // kind 0: the buyer's order signed with the seller's key.
        input.buySignature = _sign(keyOf[kind == 0 ? s : b], input.buy);
        input.sellSignature = _sign(keyOf[s], input.sell);
        chunk = new Settlement.TradeInput[](rows);
        for (uint256 i; i < rows; ++i) {
            chunk[i] = input;
        }
    }

    /// The admin extends a round's deadline within the rules, after trying one second
    /// beyond them.
    function extendDeadline(uint256 roundSeed, uint256 deltaSeed) external useTime {
        if (roundIds.length == 0) return;
        uint64 roundId = roundIds[bound(roundSeed, 0, roundIds.length - 1)];
        Settlement.Round memory round = settlement.rounds(roundId);
        if (currentTime > round.deadline) {
            ++ghost_attacksTried;
            vm.prank(ADMIN);
            try settlement.extendDeadline(roundId, round.deadline + 1) {
                ++ghost_attacksAccepted;
            } catch (bytes memory err) {
                if (bytes4(err) != Settlement.InvalidDeadline.selector) ++ghost_wrongError;
            }
            return;
        }
        uint256 maxDeadline = round.deadline + uint256(settlement.MAX_EXTENSION_S());
        if (round.minExpiry < maxDeadline) maxDeadline = round.minExpiry;
        if (maxDeadline < type(uint64).max) {
            ++ghost_attacksTried;
            vm.prank(ADMIN);
            try settlement.extendDeadline(roundId, uint64(maxDeadline + 1)) {
                ++ghost_attacksAccepted;
            } catch (bytes memory err) {
                if (bytes4(err) != Settlement.InvalidDeadline.selector) ++ghost_wrongError;
            }
        }
        if (maxDeadline <= round.deadline) return;
        uint64 newDeadline = uint64(bound(deltaSeed, round.deadline + 1, maxDeadline));
        vm.prank(ADMIN);
        settlement.extendDeadline(roundId, newDeadline);
        ++ghost_extensions;
    }

    // ============================================================ votes

    /// Anyone submits a vote set for one trade with settleTrade: a random subset of the
    /// signers (validators registered now or not, and the outsider) with random values,
    /// one time in eight with one corrupted vote. The model predicts the settlement at the
    /// median of the current validators' agreeing votes, or the revert with its exact
    /// error data (not sealed, final, late, an invalid vote, no quorum); while paused it
    /// must revert with EnforcedPause.
    function settleTrade(uint256 tradeSeed, uint256 voteSeed, uint256 callerSeed) external useTime {
        if (trades.length == 0) return;
        uint256 t = _recentTrade(uint256(keccak256(abi.encode(tradeSeed))));
        _settleOne(t, _voteSet(trades[t], voteSeed, false), actors[bound(callerSeed, 0, actors.length - 1)]);
    }

    /// Every validator registered now signs a near-honest vote on a recent trade (one time
    /// in four one of them anything) and the set is submitted: usually a settlement.
    function settleByAll(uint256 tradeSeed, uint256 voteSeed) external useTime {
        if (trades.length == 0) return;
        uint256 t = _recentTrade(uint256(keccak256(abi.encode(tradeSeed))));
        _settleOne(t, _voteSet(trades[t], voteSeed, true), actors[bound(voteSeed, 0, actors.length - 1)]);
    }

    /// settleBatch of 1..6 trades (repeats, final ones, open rounds, late ones, forged
    /// records), each with its own random vote set; the model predicts each trade's
    /// settlement or its skip reason, in order. While paused it must revert.
    function settleBatch(uint256 seed, uint256 callerSeed) external useTime {
        if (trades.length == 0) return;
        uint256 k = bound(seed, 1, 6);
        Settlement.Trade[] memory batch = new Settlement.Trade[](k);
        Settlement.SignedVote[][] memory votes = new Settlement.SignedVote[][](k);
        Expect[] memory expected = new Expect[](k);
        address caller = actors[bound(callerSeed, 0, actors.length - 1)];
        if (settlement.paused()) {
            batch[0] = trades[_recentTrade(seed >> 8)].record;
            votes[0] = _voteSet(trades[_recentTrade(seed >> 8)], seed >> 16, true).votes;
            _refusedWhilePaused(caller, abi.encodeCall(settlement.settleBatch, (batch, votes)));
            return;
        }
        for (uint256 i; i < k; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            uint256 t = _recentTrade(r);
            TradeInfo storage info = trades[t];
            VoteSet memory set = _voteSet(info, r >> 64, (r >> 40) % 4 == 0);
            batch[i] = info.record;
            votes[i] = set.votes;
            Settlement.SkipReason problem = _settleProblem(t);
            if ((r >> 32) % 8 == 0) {
                batch[i].priceMicroEurPerKwh += 1; // forged: overpay the seller
                problem = Settlement.SkipReason.UnknownTrade;
            }
            if (problem == Settlement.SkipReason.None && set.invalid) problem = Settlement.SkipReason.InvalidVote;
            uint64 median;
            if (problem == Settlement.SkipReason.None) {
                uint256 size;
                (size, median) = _modelTally(info, set.votes);
                if (size < registry.quorum()) problem = Settlement.SkipReason.NoQuorum;
            }
            if (problem != Settlement.SkipReason.None) {
                expected[i] = Expect(EXPECT_SETTLE_SKIPPED, info.id, 0, uint8(problem));
            } else {
                expected[i] = Expect(EXPECT_SETTLED, info.id, median, 0);
                modelState[info.id] = Settlement.TradeState.Settled;
            }
        }
        vm.recordLogs();
        vm.prank(caller);
        settlement.settleBatch(batch, votes);
        _checkEvents(expected, k);
    }

    // ============================================================ reclaims

    /// Anyone returns the lock of a trade whose deadline passed (also while paused: a pause
    /// never holds a lock past the deadline); a trade that cannot be reclaimed yet (or any
    /// more) must be refused with the reason.
    function reclaim(uint256 tradeSeed, uint256 callerSeed) external useTime {
        if (trades.length == 0) return;
        uint256 n = trades.length;
        uint256 start = bound(tradeSeed, 0, n - 1);
        address caller = actors[bound(callerSeed, 0, actors.length - 1)];
        Settlement.SkipReason problem = _reclaimProblem(start);
        if (problem != Settlement.SkipReason.None && uint256(keccak256(abi.encode(tradeSeed))) % 2 == 0) {
            bytes4 expected = problem == Settlement.SkipReason.TradeFinal
                ? Settlement.TradeNotOpen.selector
                : Settlement.DeadlineNotPassed.selector;
            ++ghost_attacksTried;
            vm.prank(caller);
            try settlement.reclaim(trades[start].record) {
                ++ghost_attacksAccepted;
            } catch (bytes memory err) {
                if (bytes4(err) != expected) ++ghost_wrongError;
            }
            return;
        }
        for (uint256 i; i < n; ++i) {
            uint256 t = (start + i) % n;
            if (_reclaimProblem(t) != Settlement.SkipReason.None) continue;
            Expect[] memory expected = new Expect[](1);
            expected[0] = Expect(EXPECT_RECLAIMED, trades[t].id, 0, 0);
            modelState[trades[t].id] = Settlement.TradeState.Reclaimed;
            vm.recordLogs();
            vm.prank(caller);
            settlement.reclaim(trades[t].record);
            _checkEvents(expected, 1);
            return;
        }
    }

    /// Anyone reclaims a batch of 1..6 trades (also while paused); those not reclaimable
    /// (or forged with another buyer) are skipped with the reason.
    function reclaimBatch(uint256 seed, uint256 callerSeed) external useTime {
        if (trades.length == 0) return;
        uint256 k = bound(seed, 1, 6);
        Settlement.Trade[] memory batch = new Settlement.Trade[](k);
        Expect[] memory expected = new Expect[](k);
        for (uint256 i; i < k; ++i) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            uint256 t = bound(r, 0, trades.length - 1);
            TradeInfo storage info = trades[t];
            batch[i] = info.record;
            Settlement.SkipReason problem = _reclaimProblem(t);
            if ((r >> 32) % 8 == 0) {
                batch[i].buyer = actors[bound(r >> 40, 0, actors.length - 1)];
                if (batch[i].buyer != info.record.buyer) problem = Settlement.SkipReason.UnknownTrade;
            }
            if (problem != Settlement.SkipReason.None) {
                expected[i] = Expect(EXPECT_RECLAIM_SKIPPED, info.id, 0, uint8(problem));
            } else {
                expected[i] = Expect(EXPECT_RECLAIMED, info.id, 0, 0);
                modelState[info.id] = Settlement.TradeState.Reclaimed;
            }
        }
        vm.recordLogs();
        vm.prank(actors[bound(callerSeed, 0, actors.length - 1)]);
        settlement.reclaimBatch(batch);
        _checkEvents(expected, k);
    }

    // ============================================================ admin, participants, time

    /// The registrar registers a validator (under a new epoch) or revokes it: 0..5
    /// validators, so every quorum size from none to 4 of 5 occurs.
    function toggleValidator(uint256 seed) external useTime {
        address v = signers[bound(seed, 0, N_VALIDATORS - 1)];
        bool registered = registry.epochOf(v) != 0;
        vm.prank(ADMIN);
        if (registered) registry.revoke(v);
        else registry.register(v);
    }

    /// The pauser pauses (one time in four) or unpauses.
    function togglePause(uint256 seed) external useTime {
        bool paused = settlement.paused();
        if (!paused && seed % 4 != 0) return;
        vm.prank(ADMIN);
        if (paused) settlement.unpause();
        else settlement.pause();
    }

    /// A participant cancels one of its orders (also a partly filled one).
    function cancelOrder(uint256 seed) external useTime {
        if (book.length == 0) return;
        BookOrder storage o = book[bound(seed, 0, book.length - 1)];
        if (o.cancelled) return;
        vm.prank(o.order.participant);
        settlement.cancelOrder(o.order.nonce);
        o.cancelled = true;
    }

    /// A buyer passes some of its energy tokens to another account.
    function transferEnergy(uint256 fromSeed, uint256 toSeed, uint256 amountSeed) external useTime {
        address from = buyers[bound(fromSeed, 0, N_BUYERS - 1)];
        address to = actors[bound(toSeed, 0, actors.length - 1)];
        uint64 slot = slots[amountSeed % 2];
        uint256 balance = energy.balanceOf(from, slot);
        if (balance == 0) return;
        vm.prank(from);
        energy.safeTransferFrom(from, to, slot, bound(amountSeed >> 8, 1, balance), "");
    }

    /// Time passes: 1 minute to 12 hours.
    function warp(uint256 seed) external {
        currentTime += bound(seed, 1 minutes, 12 hours);
        vm.warp(currentTime);
    }

    // ============================================================ views for the invariants

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function tradeCount() external view returns (uint256) {
        return trades.length;
    }

    function tradeAt(uint256 i) external view returns (Settlement.Trade memory record, bytes32 id, uint256 lock) {
        TradeInfo storage info = trades[i];
        return (info.record, info.id, info.lock);
    }

    function orderCount() external view returns (uint256) {
        return book.length;
    }

    function orderAt(uint256 i)
        external
        view
        returns (address participant, uint64 nonce, bytes32 hash, uint64 quantityWh, uint64 filled)
    {
        BookOrder storage o = book[i];
        return (o.order.participant, o.order.nonce, o.hash, o.order.quantityWh, o.filled);
    }

    function latestDeadline() external view returns (uint64 latest) {
        for (uint256 i; i < roundIds.length; ++i) {
            uint64 d = settlement.rounds(roundIds[i]).deadline;
            if (d > latest) latest = d;
        }
    }

    /// Locks of the trades the contract holds open, in total and for `account` as buyer.
    function openLocks(address account) external view returns (uint256 total, uint256 ofAccount) {
        for (uint256 i; i < trades.length; ++i) {
            TradeInfo storage info = trades[i];
            if (settlement.tradeState(info.id) != Settlement.TradeState.Open) continue;
            total += info.lock;
            if (info.record.buyer == account) ofAccount += info.lock;
        }
    }

    // ============================================================ internals: planning

    /// Picks (or makes) a buy and a sell order for one trade of a round with `deadline`;
    /// never the same pair twice in a round.
    function _planTrade(uint256 r, uint64 deadline, uint256[] memory buyIdx, uint256[] memory sellIdx, uint256 k)
        internal
        returns (uint256 bi, uint256 si)
    {
        bi = _pickBuy(r, deadline);
        si = _pickSell(r, deadline, bi);
        for (uint256 j; j < k; ++j) {
            if (buyIdx[j] == bi && sellIdx[j] == si) return (bi, _newSell(r, deadline, bi));
        }
    }

    /// Half the time a usable buy order of the buyer (partly filled, maybe from another
    /// round), else a fresh one.
    function _pickBuy(uint256 r, uint64 deadline) internal returns (uint256 bi) {
        address b = buyers[bound(r, 0, N_BUYERS - 1)];
        if ((r >> 8) % 2 == 0) {
            bi = _findOrder(b, true, 0, type(uint64).max, deadline, r >> 16);
            if (bi != type(uint256).max) return bi;
        }
        Settlement.Order memory order = _orderOf(b, true, slots[(r >> 24) % 2], 0, 0, 0, 0);
        order.quantityWh = uint64(bound(r >> 32, 1, 5000));
        order.limitMicroEurPerKwh = uint64(bound(r >> 48, 100_000, 400_000));
        order.maxFeeMicroEurPerKwh = uint64(bound(r >> 64, 0, 50_000));
        order.expiry = deadline + uint64(bound(r >> 80, 0, 5 days));
        return _book(order);
    }

    /// Half the time a usable sell order of the seller for the buy order's slot with a
    /// limit within the buyer's, else a fresh one.
    function _pickSell(uint256 r, uint64 deadline, uint256 bi) internal returns (uint256 si) {
        Settlement.Order storage buy = book[bi].order;
        address s = sellers[bound(r >> 96, 0, N_SELLERS - 1)];
        if ((r >> 104) % 2 == 0) {
            si = _findOrder(s, false, buy.slotStart, buy.limitMicroEurPerKwh, deadline, r >> 112);
            if (si != type(uint256).max) return si;
        }
        return _newSell(r, deadline, bi);
    }

    function _newSell(uint256 r, uint64 deadline, uint256 bi) internal returns (uint256) {
        Settlement.Order storage buy = book[bi].order;
        address s = sellers[bound(r >> 96, 0, N_SELLERS - 1)];
        Settlement.Order memory order = _orderOf(s, false, buy.slotStart, 0, 0, 0, 0);
        order.quantityWh = uint64(bound(r >> 120, 1, 5000));
        order.limitMicroEurPerKwh = uint64(bound(r >> 136, 0, buy.limitMicroEurPerKwh));
        order.expiry = deadline + uint64(bound(r >> 152, 0, 5 days));
        return _book(order);
    }

    /// The trade's terms within both limits and remaining quantities; reserves them.
    function _input(uint256 bi, uint256 si, uint256 r) internal returns (Settlement.TradeInput memory input) {
        BookOrder storage buy = book[bi];
        BookOrder storage sell = book[si];
        uint64 buyLimit = buy.order.limitMicroEurPerKwh;
        uint64 sellLimit = sell.order.limitMicroEurPerKwh;
        uint64 maxFee = buy.order.maxFeeMicroEurPerKwh;
        if (buyLimit - sellLimit < maxFee) maxFee = buyLimit - sellLimit;
        uint64 fee = uint64(bound(r, 0, maxFee));
        uint64 price = uint64(bound(r >> 64, sellLimit, buyLimit - fee));
        uint256 remaining = Reference.min(buy.order.quantityWh - buy.filled, sell.order.quantityWh - sell.filled);
        uint64 q = uint64(bound(r >> 128, 1, remaining));
        buy.filled += q;
        sell.filled += q;
        input = Settlement.TradeInput(buy.order, buy.signature, sell.order, sell.signature, q, price, fee);
    }

    /// Adds inputs[start, end) as one chunk; checks which trades the contract dropped
    /// against the buyers' free balances; books the accepted ones, un-reserves the dropped.
    function _addChunk(
        uint64 roundId,
        Settlement.TradeInput[] memory inputs,
        uint256[] memory buyIdx,
        uint256[] memory sellIdx,
        uint256 start,
        uint256 end
    ) internal {
        Settlement.TradeInput[] memory chunk = new Settlement.TradeInput[](end - start);
        bool[] memory accepted = new bool[](end - start);
        (uint256[] memory free,) = settlement.balancesOf(buyers);
        for (uint256 i; i < chunk.length; ++i) {
            Settlement.TradeInput memory input = inputs[start + i];
            chunk[i] = input;
            uint256 b = buyerIndex[input.buy.participant] - 1;
            uint256 lock = Reference.lockAmount(input.quantityWh, input.priceMicroEurPerKwh, input.feeMicroEurPerKwh);
            if (free[b] >= lock) (free[b], accepted[i]) = (free[b] - lock, true);
        }
        vm.prank(OPERATOR);
        settlement.addTrades(roundId, chunk);
        for (uint256 i; i < chunk.length; ++i) {
            _recordOutcome(roundId, chunk[i], buyIdx[start + i], sellIdx[start + i], accepted[i]);
        }
    }

    /// Books an accepted trade (checking its stored record) or un-reserves a dropped one;
    /// the contract's choice must be the predicted one.
    function _recordOutcome(
        uint64 roundId,
        Settlement.TradeInput memory input,
        uint256 bi,
        uint256 si,
        bool predictedAccepted
    ) internal {
        Settlement.Trade memory record = Settlement.Trade(
            roundId,
            book[bi].hash,
            book[si].hash,
            input.buy.participant,
            input.sell.participant,
            input.buy.slotStart,
            input.buy.slotEnd,
            input.quantityWh,
            input.priceMicroEurPerKwh,
            input.feeMicroEurPerKwh
        );
        bytes32 id = settlement.tradeIdOf(roundId, record.buyOrder, record.sellOrder);
        bool open = settlement.tradeState(id) == Settlement.TradeState.Open;
        if (open != predictedAccepted) ++ghost_modelMismatch;
        if (open) {
            uint256 lock = Reference.lockAmount(input.quantityWh, input.priceMicroEurPerKwh, input.feeMicroEurPerKwh);
            trades.push(TradeInfo(record, id, lock));
            tradeIndex[id] = trades.length;
            modelState[id] = Settlement.TradeState.Open;
            ++ghost_added;
        } else {
            book[bi].filled -= input.quantityWh;
            book[si].filled -= input.quantityWh;
            ++ghost_dropped;
        }
    }

    /// A usable order of `participant` (not cancelled, not filled, expiring at or after
    /// `deadline`; for a sell: of `slot` with a limit at most `maxLimit`), from a random start.
    function _findOrder(address participant, bool isBuy, uint64 slot, uint64 maxLimit, uint64 deadline, uint256 r)
        internal
        view
        returns (uint256)
    {
        uint256 n = book.length;
        if (n == 0) return type(uint256).max;
        uint256 start = bound(r, 0, n - 1);
        for (uint256 i; i < n; ++i) {
            uint256 j = (start + i) % n;
            BookOrder storage o = book[j];
            Settlement.Order storage order = o.order;
            if (order.participant != participant || order.isBuy != isBuy || o.cancelled) continue;
            if (o.filled >= order.quantityWh || order.expiry < deadline) continue;
            if (_slotClosed(order.slotStart)) continue;
            if (!isBuy && (order.slotStart != slot || order.limitMicroEurPerKwh > maxLimit)) continue;
            return j;
        }
        return type(uint256).max;
    }

    /// An order of `participant` whose nonce the contract has bound (used on chain).
    function _boundOrder(address participant, uint256 r) internal view returns (bool, uint256) {
        uint256 n = book.length;
        if (n == 0) return (false, 0);
        uint256 start = bound(r, 0, n - 1);
        for (uint256 i; i < n; ++i) {
            uint256 j = (start + i) % n;
            Settlement.Order storage order = book[j].order;
            if (order.participant != participant || settlement.nonceCancelled(participant, order.nonce)) continue;
            if (settlement.orderUse(participant, order.nonce).orderHash != bytes24(0)) return (true, j);
        }
        return (false, 0);
    }

    /// Signs `order` and adds it to the book.
    function _book(Settlement.Order memory order) internal returns (uint256) {
        book.push(BookOrder(order, _sign(keyOf[order.participant], order), settlement.orderHash(order), 0, false));
        return book.length - 1;
    }

    /// An order under the participant's next nonce (not in the book).
    function _orderOf(
        address participant,
        bool isBuy,
        uint64 slot,
        uint64 quantityWh,
        uint64 limit,
        uint64 maxFee,
        uint64 expiry
    ) internal returns (Settlement.Order memory) {
        return Settlement.Order(
            participant, isBuy, slot, slot + SLOT_LENGTH, quantityWh, limit, maxFee, expiry, nextNonce[participant]++
        );
    }

    function _sign(uint256 key, Settlement.Order memory order) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, settlement.orderHash(order));
        return abi.encodePacked(r, s, v);
    }

    /// Three times in four one of the 8 latest trades, else any.
    function _recentTrade(uint256 r) internal view returns (uint256) {
        uint256 n = trades.length;
        if (r % 4 == 0) return bound(r >> 8, 0, n - 1);
        return n - 1 - bound(r >> 8, 0, Reference.min(n, 8) - 1);
    }

    /// Why trade `t` cannot be settled now, before its votes are looked at (the model's
    /// view of the contract's rule).
    function _settleProblem(uint256 t) internal view returns (Settlement.SkipReason) {
        TradeInfo storage info = trades[t];
        Settlement.Round memory round = settlement.rounds(info.record.roundId);
        if (round.status != Settlement.RoundStatus.Sealed) return Settlement.SkipReason.RoundNotSealed;
        if (modelState[info.id] != Settlement.TradeState.Open) return Settlement.SkipReason.TradeFinal;
        // Delivery must be over: votes count from the slot's end (block time) on.
        if (currentTime < info.record.slotEnd) return Settlement.SkipReason.SlotNotEnded;
        if (currentTime > round.deadline) return Settlement.SkipReason.AttestationClosed;
        return Settlement.SkipReason.None;
    }

    /// settleTrade of trade `t` with `set` by `caller`: a settlement when the model
    /// predicts one (events checked), else the exact revert the model predicts.
    function _settleOne(uint256 t, VoteSet memory set, address caller) internal {
        TradeInfo storage info = trades[t];
        bytes memory call = abi.encodeCall(settlement.settleTrade, (info.record, set.votes));
        if (settlement.paused()) {
            _refusedWhilePaused(caller, call);
            return;
        }
        Settlement.SkipReason problem = _settleProblem(t);
        bytes memory err;
        uint64 median;
        if (problem == Settlement.SkipReason.RoundNotSealed) {
            err = abi.encodeWithSelector(Settlement.RoundNotSealed.selector, info.record.roundId);
        } else if (problem == Settlement.SkipReason.TradeFinal) {
            err = abi.encodeWithSelector(Settlement.TradeNotOpen.selector, info.id);
        } else if (problem == Settlement.SkipReason.SlotNotEnded) {
            err = abi.encodeWithSelector(
                Settlement.SettlementSlotNotEnded.selector, info.id, info.record.slotEnd, currentTime
            );
        } else if (problem == Settlement.SkipReason.AttestationClosed) {
            uint64 deadline = settlement.rounds(info.record.roundId).deadline;
            err = abi.encodeWithSelector(Settlement.AttestationClosed.selector, info.record.roundId, deadline);
        } else if (set.invalid) {
            err = abi.encodeWithSelector(Settlement.InvalidVote.selector, info.id, set.invalidValidator);
        } else {
            uint256 size;
            (size, median) = _modelTally(info, set.votes);
            uint256 quorum = registry.quorum();
            if (size < quorum) err = abi.encodeWithSelector(Settlement.NoQuorum.selector, info.id, size, quorum);
        }
        if (err.length > 0) {
            ++ghost_attacksTried;
            vm.prank(caller);
            (bool ok, bytes memory got) = address(settlement).call(call);
            if (ok) ++ghost_attacksAccepted;
            else if (keccak256(got) != keccak256(err)) ++ghost_wrongError;
            return;
        }
        Expect[] memory expected = new Expect[](1);
        expected[0] = Expect(EXPECT_SETTLED, info.id, median, 0);
        modelState[info.id] = Settlement.TradeState.Settled;
        vm.recordLogs();
        vm.prank(caller);
        settlement.settleTrade(info.record, set.votes);
        _checkEvents(expected, 1);
    }

    /// The largest agreeing group of the votes of validators registered now and its lower
    /// median, by the reference rule.
    function _modelTally(TradeInfo storage info, Settlement.SignedVote[] memory votes)
        internal
        view
        returns (uint256 size, uint64 median)
    {
        uint64[] memory current = new uint64[](votes.length);
        uint256 m = 0;
        for (uint256 i; i < votes.length; ++i) {
            if (registry.epochOf(votes[i].validator) != 0) current[m++] = votes[i].deliveredWh;
        }
        assembly ("memory-safe") {
            mstore(current, m)
        }
        return Reference.agreement(current, Reference.toleranceWh(info.record.quantityWh, tolerancePerMille));
    }

    /// A vote set for `info`, each vote properly signed unless corrupted. With `byAll`:
    /// every validator registered now, near-honest values (one time in four one vote
    /// anything). Otherwise: each signer in with probability 7/8 (the outsider 1/4), any
    /// value (_voteValue); one time in eight one vote corrupted. Rotated to a random start.
    function _voteSet(TradeInfo storage info, uint256 seed, bool byAll) internal returns (VoteSet memory set) {
        seed = uint256(keccak256(abi.encode(seed, info.id))); // fuzzed seeds are often small
        uint256 n = signers.length;
        Settlement.SignedVote[] memory votes = new Settlement.SignedVote[](n + 1); // + a duplicate
        uint256 k = 0;
        uint256 start = bound(seed >> 40, 0, n - 1);
        for (uint256 j; j < n; ++j) {
            (bool include, Settlement.SignedVote memory vote) = _signerVote(info, seed, (start + j) % n, byAll);
            if (include) votes[k++] = vote;
        }
        ghost_votes += k;
        if (!byAll && (seed >> 48) % 8 == 0 && k > 0) {
            uint256 pos = bound(seed >> 56, 0, k - 1);
            (k, set.invalidValidator) = _corrupt(votes, k, pos, bound(seed >> 64, 0, 6), info.id);
            set.invalid = true;
            ++ghost_corruptVotes;
        }
        assembly ("memory-safe") {
            mstore(votes, k)
        }
        set.votes = votes;
    }

    /// Whether signer `i` is in the set `_voteSet` builds from `seed`, and its signed vote.
    function _signerVote(TradeInfo storage info, uint256 seed, uint256 i, bool byAll)
        internal
        view
        returns (bool include, Settlement.SignedVote memory vote)
    {
        uint256 r = uint256(keccak256(abi.encode(seed, i)));
        include = byAll ? registry.epochOf(signers[i]) != 0 : (i == N_VALIDATORS ? r % 4 == 0 : r % 8 != 0);
        if (!include) return (false, vote);
        // With byAll, one time in four one validator (the odd one) votes anything.
        bool odd = (seed >> 24) % 4 == 0 && bound(seed >> 32, 0, signers.length - 1) == i;
        uint64 wh = byAll && !odd ? _honestValue(info, r >> 8) : _voteValue(info, r >> 8);
        vote = Settlement.SignedVote(
            signers[i], registry.epochOf(signers[i]), wh, _signVote(settlement, signerKeys[i], info.id, wh)
        );
    }

    /// Corrupts votes[pos] of the first `k` votes (for trade `id`) in the way `kind` names:
    /// random signature bytes, another value than signed, signed for another trade id,
    /// under another deployment's domain, by the forger's key, the malleable twin, or (6)
    /// a second vote of the same validator appended. Returns the new length and the
    /// validator the contract names first.
    function _corrupt(Settlement.SignedVote[] memory votes, uint256 k, uint256 pos, uint256 kind, bytes32 id)
        internal
        view
        returns (uint256, address)
    {
        Settlement.SignedVote memory v = votes[pos];
        uint256 key = _keyOfSigner(v.validator);
        if (kind == 0) {
            v.signature = abi.encodePacked(keccak256(abi.encode(id, pos)), bytes32(uint256(1)), uint8(28));
        } else if (kind == 1) {
            v.deliveredWh += 1;
        } else if (kind == 2) {
            v.signature = _signVote(settlement, key, keccak256(abi.encode(id)), v.deliveredWh);
        } else if (kind == 3) {
            v.signature = _signVote(otherSettlement, key, id, v.deliveredWh);
        } else if (kind == 4) {
            v.signature = _signVote(settlement, FORGER_KEY, id, v.deliveredWh);
        } else if (kind == 5) {
            (uint8 pv, bytes32 r, bytes32 s) = vm.sign(key, settlement.attestationHash(id, v.deliveredWh, v.epoch));
            v.signature = abi.encodePacked(r, bytes32(SECP256K1_N - uint256(s)), pv == 27 ? uint8(28) : uint8(27));
        } else {
            uint64 wh = v.deliveredWh / 2;
            votes[k] = Settlement.SignedVote(v.validator, v.epoch, wh, _signVote(settlement, key, id, wh));
            return (k + 1, v.validator);
        }
        return (k, v.validator);
    }

    function _keyOfSigner(address signer) internal view returns (uint256) {
        for (uint256 i; i < signers.length; ++i) {
            if (signers[i] == signer) return signerKeys[i];
        }
        revert("unknown signer");
    }

    /// 65-byte signature by `key` of the attestation that `tradeId` delivered `wh`, under
    /// `target`'s EIP-712 domain.
    function _signVote(Settlement target, uint256 key, bytes32 tradeId, uint64 wh)
        internal
        view
        returns (bytes memory)
    {
        uint32 epoch = target.validators().epochOf(vm.addr(key));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, target.attestationHash(tradeId, wh, epoch));
        return abi.encodePacked(r, s, v);
    }

    /// The trade's "true" delivery (from its id): the quantity, or up to a quarter less.
    function _truth(TradeInfo storage info) internal view returns (uint256) {
        uint256 q = info.record.quantityWh;
        uint256 h = uint256(info.id);
        return h % 4 == 0 ? q : q - bound(h >> 8, 0, q / 4);
    }

    /// An honest vote: within half the tolerance of the true delivery.
    function _honestValue(TradeInfo storage info, uint256 seed) internal view returns (uint64) {
        uint256 tol = Reference.toleranceWh(info.record.quantityWh, tolerancePerMille);
        uint256 truth = _truth(info);
        uint256 offset = bound(seed >> 8, 0, tol / 2);
        return uint64((seed >> 128) % 2 == 0 ? truth + offset : truth - Reference.min(truth, offset));
    }

    /// A vote value: five times in eight an honest vote, else a zeroing vote, an inflated
    /// one (beyond the quantity) or anything in [0, 2q].
    function _voteValue(TradeInfo storage info, uint256 seed) internal view returns (uint64) {
        uint256 q = info.record.quantityWh;
        uint256 mode = seed % 8;
        if (mode < 5) return _honestValue(info, seed);
        if (mode == 5) return 0;
        if (mode == 6) return uint64(2 * q + bound(seed >> 8, 0, q));
        return uint64(bound(seed >> 8, 0, 2 * q));
    }

    // ============================================================ internals: reclaims, events

    function _reclaimProblem(uint256 t) internal view returns (Settlement.SkipReason) {
        TradeInfo storage info = trades[t];
        if (modelState[info.id] != Settlement.TradeState.Open) return Settlement.SkipReason.TradeFinal;
        if (currentTime <= settlement.rounds(info.record.roundId).deadline) return Settlement.SkipReason.NotExpired;
        return Settlement.SkipReason.None;
    }

    /// Walks the logs of the last call: the settlement's TradeSettled, SettleSkipped,
    /// TradeReclaimed and ReclaimSkipped events must be exactly `expected[0..count)`, in
    /// order, and each settlement paying Wh must be followed by the energy token's
    /// Delivered(seller, buyer, slot, Wh); settled and reclaimed trades update the ghosts.
    function _checkEvents(Expect[] memory expected, uint256 count) internal {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        uint256 next = 0;
        for (uint256 i; i < logs.length; ++i) {
            Vm.Log memory log = logs[i];
            if (log.emitter == address(energy)) {
                if (log.topics[0] == EnergyToken.Delivered.selector) {
                    bytes32 got = keccak256(abi.encode(log.topics[1], log.topics[2], log.topics[3], log.data));
                    if (got != _pendingDelivery) ++ghost_modelMismatch;
                    _pendingDelivery = bytes32(0);
                }
                continue;
            }
            if (log.emitter != address(settlement)) continue;
            bytes32 topic = log.topics[0];
            uint8 kind;
            if (topic == Settlement.TradeSettled.selector) kind = EXPECT_SETTLED;
            else if (topic == Settlement.SettleSkipped.selector) kind = EXPECT_SETTLE_SKIPPED;
            else if (topic == Settlement.TradeReclaimed.selector) kind = EXPECT_RECLAIMED;
            else if (topic == Settlement.ReclaimSkipped.selector) kind = EXPECT_RECLAIM_SKIPPED;
            else continue;
            bytes32 id = log.topics[1];
            // Independent of the model: money moves for delivered energy only, i.e. never
            // before the trade's slot has ended.
            if (kind == EXPECT_SETTLED && tradeIndex[id] != 0) {
                if (currentTime < trades[tradeIndex[id] - 1].record.slotEnd) ++ghost_paidBeforeDelivery;
            }
            if (next >= count || expected[next].kind != kind || expected[next].id != id) {
                ++ghost_modelMismatch;
                ++next;
                continue;
            }
            Expect memory e = expected[next++];
            if (kind == EXPECT_SETTLED) {
                (uint64 paidWh, uint256 toSeller, uint256 fee, uint256 refund) =
                    abi.decode(log.data, (uint64, uint256, uint256, uint256));
                _onSettled(id, e.verifiedWh, paidWh, toSeller, fee, refund);
            } else if (kind == EXPECT_RECLAIMED) {
                uint256 refund = abi.decode(log.data, (uint256));
                if (++ghost_finalEvents[id] > 1) ++ghost_finalTwice;
                if (refund != trades[tradeIndex[id] - 1].lock) ++ghost_modelMismatch;
                ++ghost_reclaimed;
            } else {
                if (abi.decode(log.data, (uint8)) != e.reason) ++ghost_modelMismatch;
                ++ghost_skips;
            }
        }
        if (next != count) ++ghost_modelMismatch;
        if (_pendingDelivery != bytes32(0)) ++ghost_modelMismatch; // no Delivered event
        _pendingDelivery = bytes32(0);
    }

    function _onSettled(bytes32 id, uint64 verifiedWh, uint64 paidWh, uint256 toSeller, uint256 fee, uint256 refund)
        internal
        virtual
    {
        TradeInfo storage info = trades[tradeIndex[id] - 1];
        Settlement.Trade storage t = info.record;
        if (++ghost_finalEvents[id] > 1) ++ghost_finalTwice;
        uint256 payable_ = Reference.min(t.quantityWh, verifiedWh);
        if (toSeller + fee + refund != info.lock) ++ghost_lockNotSplit;
        if (toSeller * 1000 > uint256(t.priceMicroEurPerKwh) * payable_) ++ghost_sellerOverpaid;
        if (paidWh != payable_ || toSeller != payable_ * t.priceMicroEurPerKwh / 1000) ++ghost_modelMismatch;
        if (fee != payable_ * t.feeMicroEurPerKwh / 1000) ++ghost_modelMismatch;
        if (_pendingDelivery != bytes32(0)) ++ghost_modelMismatch; // the previous one undelivered
        _pendingDelivery = paidWh == 0
            ? bytes32(0)
            : keccak256(
                abi.encode(
                    bytes32(uint256(uint160(t.seller))),
                    bytes32(uint256(uint160(t.buyer))),
                    bytes32(uint256(t.slotStart)),
                    abi.encode(uint256(paidWh))
                )
            );
        ghost_whPaid += paidWh;
        ghost_paidToSellers += toSeller;
        ghost_fees += fee;
        ++ghost_settled;
    }

    /// Whether no trade may be planned any more for the slot starting at the time given (a
    /// derived handler closes hours whose certificates it issues); none here.
    function _slotClosed(uint64) internal view virtual returns (bool) {
        return false;
    }

    /// `data` called by `caller` while paused must revert with EnforcedPause.
    function _refusedWhilePaused(address caller, bytes memory data) internal {
        ++ghost_attacksTried;
        vm.prank(caller);
        (bool ok, bytes memory err) = address(settlement).call(data);
        if (ok) ++ghost_attacksAccepted;
        else if (bytes4(err) != bytes4(keccak256("EnforcedPause()"))) ++ghost_wrongError;
    }

    // ============================================================ internals: balances

    function _mint(address to, uint256 amount) internal {
        vm.prank(ADMIN);
        payment.mint(to, amount);
        ghost_minted += amount;
    }

    function _freeOf(address account) internal view returns (uint256) {
        address[] memory one = new address[](1);
        one[0] = account;
        (uint256[] memory free,) = settlement.balancesOf(one);
        return free[0];
    }

    /// An open round (three times in four one whose deadline has not passed), from a
    /// random start.
    function _openRound(uint256 seed) internal view returns (uint64, bool) {
        uint256 n = roundIds.length;
        uint256 start = bound(seed, 0, n - 1);
        for (uint256 i; i < n; ++i) {
            uint64 id = roundIds[(start + i) % n];
            Settlement.Round memory round = settlement.rounds(id);
            if (round.status != Settlement.RoundStatus.Open) continue;
            if (round.deadline >= currentTime || uint256(keccak256(abi.encode(seed))) % 4 == 0) return (id, true);
        }
        return (0, false);
    }
}
