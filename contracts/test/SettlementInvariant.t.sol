// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "./Vm.sol";
import {SettlementHandler} from "./handlers/SettlementHandler.sol";
import {PaymentToken} from "../src/PaymentToken.sol";
import {EnergyToken} from "../src/EnergyToken.sol";
import {Settlement} from "../src/Settlement.sol";

/// Invariants over random sequences of {SettlementHandler} actions: multi-chunk rounds,
/// deposits, withdrawals, signed vote sets from random subsets of validators (with
/// outsiders and corrupted votes) submitted alone or in batches, validator churn,
/// pauses, deadline extensions, time, reclaims (also while paused) and refused attacks.
/// Run for a middle tolerance ({SettlementInvariantTest}) and for the extremes
/// ({SettlementInvariantTightTest}: 0, i.e. 1 Wh; {SettlementInvariantWideTest}: 100).
abstract contract SettlementInvariantBase is TestBase {
    SettlementHandler internal handler;
    Settlement internal settlement;
    PaymentToken internal payment;
    EnergyToken internal energy;

    /// The deployment's tolerance per mille.
    function tolerance() internal pure virtual returns (uint64);

    function setUp() public {
        vm.warp(1_750_000_000);
        handler = new SettlementHandler(tolerance());
        settlement = handler.settlement();
        payment = handler.payment();
        energy = handler.energy();
        targetContract(address(handler));
    }

    /// Conservation: the payment tokens the settlement holds equal the sum of all free and
    /// locked balances (fee recipient included), and deposits minus withdrawals; no token
    /// is created or lost outside the admin's mints.
    function invariant_paymentTokensConserved() public view {
        (uint256 free, uint256 locked) = _sums();
        uint256 held = payment.balanceOf(address(settlement));
        assertEq(held, free + locked, "held == free + locked");
        assertEq(held, handler.ghost_deposited() - handler.ghost_withdrawn(), "held == deposited - withdrawn");
        assertEq(payment.totalSupply(), handler.ghost_minted(), "supply == minted");
        uint256 wallets = 0;
        for (uint256 i; i < handler.actorCount(); ++i) {
            wallets += payment.balanceOf(handler.actors(i));
        }
        assertEq(wallets + held, handler.ghost_minted(), "wallets + escrow == minted");
    }

    /// Locked balances are exactly the locks of open trades, per buyer and in total.
    function invariant_lockedEqualsOpenTradeLocks() public view {
        uint256 n = handler.actorCount();
        address[] memory accounts = new address[](n);
        for (uint256 i; i < n; ++i) {
            accounts[i] = handler.actors(i);
        }
        (, uint256[] memory locked) = settlement.balancesOf(accounts);
        uint256 total = 0;
        for (uint256 i; i < n; ++i) {
            (uint256 all, uint256 mine) = handler.openLocks(accounts[i]);
            assertEq(locked[i], mine, "account locked == its open trades' locks");
            total += locked[i];
            if (i == n - 1) assertEq(total, all, "total locked == all open locks");
        }
    }

    /// Wh paid: the energy tokens held over all accounts == totalPaidWh == the Wh of the
    /// TradeSettled events (the ghost).
    function invariant_energyMintedEqualsPaidWh() public view {
        uint256 held = 0;
        for (uint256 i; i < handler.actorCount(); ++i) {
            address a = handler.actors(i);
            held += energy.balanceOf(a, handler.slots(0)) + energy.balanceOf(a, handler.slots(1));
        }
        assertEq(held, settlement.totalPaidWh(), "tokens held == totalPaidWh");
        assertEq(settlement.totalPaidWh(), handler.ghost_whPaid(), "totalPaidWh == ghost Wh paid");
    }

    /// Payment only after delivery: no trade settled before its slot's end, and every
    /// accepted trade's slot ends at least the voting window before its round's deadline
    /// (so no lock becomes reclaimable while its energy is still to be delivered or
    /// attested).
    function invariant_paidOnlyAfterDelivery() public view {
        assertEq(handler.ghost_paidBeforeDelivery(), 0, "a trade settled before its slot ended");
        uint64 window = settlement.MIN_VOTING_WINDOW_S();
        for (uint256 i; i < handler.tradeCount(); ++i) {
            (Settlement.Trade memory t,,) = handler.tradeAt(i);
            assertLe(t.slotEnd + window, settlement.rounds(t.roundId).deadline, "slot ends too late for the deadline");
        }
    }

    /// Each trade becomes final (settled or reclaimed) at most once, and the final
    /// trades are exactly those with a TradeSettled or TradeReclaimed event.
    function invariant_tradeFinalAtMostOnce() public view {
        assertEq(handler.ghost_finalTwice(), 0, "a trade final twice");
        uint256 finals = 0;
        for (uint256 i; i < handler.tradeCount(); ++i) {
            (, bytes32 id,) = handler.tradeAt(i);
            Settlement.TradeState state = settlement.tradeState(id);
            bool isFinal = state == Settlement.TradeState.Settled || state == Settlement.TradeState.Reclaimed;
            assertEq(handler.ghost_finalEvents(id), isFinal ? 1 : 0, "one final event per final trade");
            if (isFinal) ++finals;
        }
        assertEq(finals, handler.ghost_settled() + handler.ghost_reclaimed(), "finals == settled + reclaimed");
    }

    /// Every settlement paid the seller at most price x min(quantity, verified) / 1000 and
    /// split the lock exactly into payment + fee + refund.
    function invariant_sellerPaidAtMostVerified() public view {
        assertEq(handler.ghost_sellerOverpaid(), 0, "seller overpaid");
        assertEq(handler.ghost_lockNotSplit(), 0, "payment + fee + refund != lock");
        (uint256[] memory free,) = settlement.balancesOf(_one(handler.FEE_RECIPIENT()));
        assertLe(handler.ghost_fees(), free[0] + payment.balanceOf(handler.FEE_RECIPIENT()), "fees credited");
    }

    /// The contract behaves as the handler's model predicts: drops, settlements (at the
    /// median of the agreeing current votes), skips with their reasons, trade states and
    /// order fills.
    function invariant_contractMatchesModel() public view {
        assertEq(handler.ghost_modelMismatch(), 0, "contract differs from the model");
        for (uint256 i; i < handler.tradeCount(); ++i) {
            (, bytes32 id,) = handler.tradeAt(i);
            assertEq(uint256(settlement.tradeState(id)), uint256(handler.modelState(id)), "trade state");
        }
        for (uint256 i; i < handler.orderCount(); ++i) {
            (address participant, uint64 nonce, bytes32 hash, uint64 quantityWh, uint64 filled) = handler.orderAt(i);
            Settlement.OrderUse memory use = settlement.orderUse(participant, nonce);
            assertEq(use.filledWh, filled, "order fill");
            assertEq(bytes32(use.orderHash), filled > 0 ? bytes32(bytes24(hash)) : bytes32(0), "nonce binding");
            assertLe(filled, quantityWh, "never overfilled");
        }
    }

    /// Every attack the handler tried (flawed trades, trades or seals after the deadline,
    /// withdrawing locked money, vote sets that may not settle, reclaims that may not
    /// happen, deposits and settlements while paused, invalid extensions) was refused with
    /// its error.
    function invariant_attacksRefused() public view {
        assertEq(handler.ghost_attacksAccepted(), 0, "an attack went through");
        assertEq(handler.ghost_wrongError(), 0, "an attack was refused for the wrong reason");
    }

    /// After each run: past every deadline, paused or not (a pause never holds a lock),
    /// all locks can be reclaimed and every account can withdraw everything: the escrow
    /// ends empty.
    function afterInvariant() public {
        vm.warp(uint256(handler.latestDeadline()) + handler.currentTime() + 1);
        uint256 n = handler.tradeCount();
        Settlement.Trade[] memory all = new Settlement.Trade[](n);
        for (uint256 i; i < n; ++i) {
            (all[i],,) = handler.tradeAt(i);
        }
        settlement.reclaimBatch(all);
        for (uint256 i; i < handler.actorCount(); ++i) {
            address a = handler.actors(i);
            (uint256[] memory free, uint256[] memory locked) = settlement.balancesOf(_one(a));
            assertEq(locked[0], 0, "nothing locked after all reclaims");
            if (free[0] > 0) {
                vm.prank(a);
                settlement.withdraw(free[0]);
            }
        }
        assertEq(payment.balanceOf(address(settlement)), 0, "escrow drained");
    }

    function _sums() internal view returns (uint256 free, uint256 locked) {
        uint256 n = handler.actorCount();
        address[] memory accounts = new address[](n);
        for (uint256 i; i < n; ++i) {
            accounts[i] = handler.actors(i);
        }
        (uint256[] memory f, uint256[] memory l) = settlement.balancesOf(accounts);
        for (uint256 i; i < n; ++i) {
            (free, locked) = (free + f[i], locked + l[i]);
        }
    }

    function _one(address a) internal pure returns (address[] memory arr) {
        arr = new address[](1);
        arr[0] = a;
    }
}

/// The campaign at a middle tolerance (50 per mille).
contract SettlementInvariantTest is SettlementInvariantBase {
    function tolerance() internal pure override returns (uint64) {
        return 50;
    }
}

/// The campaign at tolerance 0: votes agree only within 1 Wh.
contract SettlementInvariantTightTest is SettlementInvariantBase {
    function tolerance() internal pure override returns (uint64) {
        return 0;
    }
}

/// The campaign at the largest tolerance (100 per mille).
contract SettlementInvariantWideTest is SettlementInvariantBase {
    function tolerance() internal pure override returns (uint64) {
        return 100;
    }
}
