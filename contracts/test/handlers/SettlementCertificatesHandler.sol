// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SettlementHandler} from "./SettlementHandler.sol";
import {Reference} from "../SettlementFixture.sol";
import {Settlement} from "../../src/Settlement.sol";
import {EnergyCertificates} from "../../src/EnergyCertificates.sol";

/// {SettlementHandler}'s whole campaign (signed multi-chunk rounds, random vote sets,
/// validator churn, pauses, extensions, reclaims, refused attacks) plus the certificates:
/// the hour being traded is closed now and then (its slots move to the next hour), the
/// closed hours' seller-hours are issued through the settlement (complete, incomplete or
/// repeated holder lists, too early, twice), certificates are split, passed on and
/// retired, and attacks are tried (a trade into a certified hour, moving or claiming more
/// than the active Wh, someone else's certificate). Its model of verified Wh per seller,
/// hour and buyer comes from the settlement's own TradeSettled events (checked by the
/// base handler against its independent model of the votes).
contract SettlementCertificatesHandler is SettlementHandler {
    uint256 internal constant MAX_HOURS = 6;
    string internal constant BENEFICIARY = "Stadtwerke Musterstadt customers";
    string internal constant PURPOSE = "residual mix disclosure";

    EnergyCertificates public immutable certificates;

    /// Hours closed to new trades (their starts), in closing order.
    uint64[] public closedHours;
    mapping(uint64 hourStart => bool) internal _closed;
    /// Model: Wh verified per seller-hour, and per buyer not yet issued.
    mapping(address seller => mapping(uint64 hourStart => uint256)) public ghost_verifiedOf;
    mapping(address seller => mapping(uint64 hourStart => mapping(address buyer => uint256))) internal _pendingOf;
    mapping(address seller => mapping(uint64 hourStart => uint256)) public modelIdOf;
    mapping(uint256 id => address) public sellerOf;
    mapping(uint256 id => uint64) public hourOf;
    uint256 public issuedCount;

    uint256 public ghost_issued;
    uint256 public ghost_claimed;
    mapping(address holder => mapping(uint256 id => uint256)) public ghost_claimedOf;
    /// Issued certificates whose Wh or mints differ from the model.
    uint256 public ghost_issueMismatch;
    uint256 public ghost_issuances;
    uint256 public ghost_certificateClaims;
    uint256 public ghost_lateTradesRefused;

    constructor(uint64 tolerance) SettlementHandler(tolerance) {
        certificates = settlement.certificates();
    }

    // ============================================================ hours

    /// The market moves on: the hour traded now is closed (no trade is planned in it any
    /// more) and the slots move to the next hour; at most MAX_HOURS times.
    function closeHour() external useTime {
        _closeHour();
    }

    function _closeHour() internal {
        if (closedHours.length >= MAX_HOURS) return;
        uint64 h = _hourStart(slots[0]);
        _closed[h] = true;
        closedHours.push(h);
        slots = [slots[0] + 1 hours, slots[1] + 1 hours];
    }

    /// The validators registered now vote (near-honestly, as the base handler's
    /// settleByAll) on every open trade of a closed hour, one trade at a time: the usual
    /// way an hour becomes final (half the time the hour traded now is closed first). The
    /// base handler's model predicts each outcome.
    function settleClosedHour(uint256 hourSeed, uint256 voteSeed) external useTime {
        if (closedHours.length == 0 || voteSeed % 2 == 0) _closeHour();
        if (closedHours.length == 0) return;
        uint64 h = closedHours[bound(hourSeed, 0, closedHours.length - 1)];
        // Validators vote once the hour's delivery is over (its slots end within the next
        // hour): three times in four time moves there first; else the model predicts the
        // votes refused (SlotNotEnded) for slots still running.
        if ((voteSeed >> 16) % 4 != 0 && currentTime < uint256(h) + 2 hours) {
            currentTime = uint256(h) + 2 hours;
            vm.warp(currentTime);
        }
        for (uint256 t; t < trades.length; ++t) {
            TradeInfo storage info = trades[t];
            if (_hourStart(info.record.slotStart) != h || modelState[info.id] != Settlement.TradeState.Open) continue;
            uint256 seed = uint256(keccak256(abi.encode(voteSeed, t)));
            _settleOne(t, _voteSet(info, seed, true), actors[bound(seed, 0, actors.length - 1)]);
        }
        // Half the time someone then asks for the hour's certificates, every buyer listed.
        if ((voteSeed >> 8) % 2 == 1) return;
        for (uint256 i; i < N_SELLERS; ++i) {
            _issueAttempt(sellers[i], h, type(uint256).max, actors[bound(voteSeed >> 16, 0, actors.length - 1)]);
        }
    }

    // ============================================================ issuance

    /// Anyone asks the settlement to issue a closed seller-hour, listing all buyers (three
    /// times in four) or a random subset with a repeat: a mint exactly as the model
    /// predicts, else the exact refusal (issued already, trades open, nothing verified, a
    /// buyer left out); while paused, EnforcedPause.
    function issueCertificates(uint256 sellerSeed, uint256 hourSeed, uint256 maskSeed, uint256 callerSeed)
        external
        useTime
    {
        if (closedHours.length == 0) return;
        address s = sellers[bound(sellerSeed, 0, N_SELLERS - 1)];
        uint64 h = closedHours[bound(hourSeed, 0, closedHours.length - 1)];
        // Three times in four a seller-hour ready to issue, if there is one.
        if ((maskSeed >> 32) % 4 != 0) (s, h) = _ready(s, h);
        _issueAttempt(s, h, maskSeed, actors[bound(callerSeed, 0, actors.length - 1)]);
    }

    /// `caller` asks to issue `s`'s hour `h` with the holders `maskSeed` picks; the model
    /// predicts the mint or the exact refusal.
    function _issueAttempt(address s, uint64 h, uint256 maskSeed, address caller) internal {
        (EnergyCertificates.IssueRequest[] memory requests, uint256 listedWh) = _request(s, h, maskSeed);
        bytes memory call = abi.encodeCall(settlement.issueCertificates, (requests));
        if (settlement.paused()) {
            _refusedWhilePaused(caller, call);
            return;
        }
        bytes memory err = _issueError(s, h, listedWh);
        if (err.length > 0) {
            ++ghost_attacksTried;
            vm.prank(caller);
            (bool ok, bytes memory got) = address(settlement).call(call);
            if (ok) ++ghost_attacksAccepted;
            else if (keccak256(got) != keccak256(err)) ++ghost_wrongError;
            return;
        }
        vm.prank(caller);
        uint256 id = settlement.issueCertificates(requests)[0];
        _onIssued(s, h, id);
    }

    /// The exact error the model expects for issuing `s`'s hour `h` listing `listedWh`.
    function _issueError(address s, uint64 h, uint256 listedWh) internal view returns (bytes memory) {
        uint256 verified = ghost_verifiedOf[s][h];
        if (modelIdOf[s][h] != 0) {
            return
                abi.encodeWithSelector(
                    EnergyCertificates.EnergyCertificatesAlreadyIssued.selector, s, h, modelIdOf[s][h]
                );
        }
        uint32 open = _openTrades(s, h);
        if (open != 0) {
            return abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesPeriodOpen.selector, s, h, open);
        }
        if (verified == 0) {
            return abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesNothingToIssue.selector, s, h);
        }
        if (listedWh != verified) {
            return abi.encodeWithSelector(
                EnergyCertificates.EnergyCertificatesHoldersIncomplete.selector, s, h, listedWh, verified
            );
        }
        return "";
    }

    function _onIssued(address s, uint64 h, uint256 id) internal {
        ++issuedCount;
        ++ghost_issuances;
        if (id != issuedCount) ++ghost_issueMismatch;
        (modelIdOf[s][h], sellerOf[id], hourOf[id]) = (id, s, h);
        uint256 verified = ghost_verifiedOf[s][h];
        ghost_issued += verified;
        EnergyCertificates.Certificate memory c = certificates.certificate(id);
        if (c.issuedWh != verified || c.device != s || _hourStart(c.start) != h) ++ghost_issueMismatch;
        for (uint256 i; i < N_BUYERS; ++i) {
            address b = buyers[i];
            if (certificates.balanceOf(b, id) != _pendingOf[s][h][b]) ++ghost_issueMismatch;
            _pendingOf[s][h][b] = 0;
        }
    }

    // ============================================================ holders

    /// A holder passes part (or all) of a certificate to another actor: a split.
    function transferCertificate(uint256 fromSeed, uint256 toSeed, uint256 idSeed, uint256 amountSeed)
        external
        useTime
    {
        if (issuedCount == 0) return;
        (address from, uint256 id, uint256 held) = _holding(fromSeed, idSeed);
        address to = actors[bound(toSeed, 0, actors.length - 1)];
        if (held == 0) return;
        vm.prank(from);
        certificates.safeTransferFrom(from, to, id, bound(amountSeed, 1, held), "");
    }

    /// A holder retires part of its active Wh for a beneficiary.
    function claimCertificate(uint256 holderSeed, uint256 idSeed, uint256 whSeed) external useTime {
        if (issuedCount == 0) return;
        (address holder, uint256 id, uint256 held) = _holding(holderSeed, idSeed);
        if (held == 0) return;
        uint64 wh = uint64(bound(whSeed, 1, held));
        vm.prank(holder);
        certificates.claim(id, wh, BENEFICIARY, PURPOSE);
        ghost_claimedOf[holder][id] += wh;
        ghost_claimed += wh;
        ++ghost_certificateClaims;
    }

    // ============================================================ attacks

    /// A holder claims or moves more than its active Wh (its claimed Wh included), or an
    /// outsider claims or moves a holder's certificate without approval: exact errors.
    function attackCertificate(uint256 kindSeed, uint256 holderSeed, uint256 idSeed, uint256 extraSeed)
        external
        useTime
    {
        if (issuedCount == 0) return;
        address holder = actors[bound(holderSeed, 0, actors.length - 1)];
        address thief = actors[bound(holderSeed >> 8, 0, actors.length - 1)];
        uint256 id = bound(idSeed, 1, issuedCount);
        uint256 held = certificates.balanceOf(holder, id);
        uint256 more = held + bound(extraSeed, 1, 1e6);
        uint256 kind = kindSeed % 3;
        bytes memory call;
        bytes memory err;
        address caller = holder;
        if (kind == 0) {
            call = abi.encodeCall(certificates.claim, (id, uint64(more), BENEFICIARY, PURPOSE));
            err = abi.encodeWithSelector(
                EnergyCertificates.EnergyCertificatesInsufficientActive.selector, holder, id, held, more
            );
        } else if (kind == 1) {
            call = abi.encodeCall(certificates.safeTransferFrom, (holder, thief, id, more, ""));
            err = abi.encodeWithSignature(
                "ERC1155InsufficientBalance(address,uint256,uint256,uint256)", holder, held, more, id
            );
        } else {
            if (thief == holder) return;
            caller = thief;
            call = (extraSeed >> 128) % 2 == 0
                ? abi.encodeCall(certificates.claimFrom, (holder, id, 1, BENEFICIARY, PURPOSE))
                : abi.encodeCall(certificates.safeTransferFrom, (holder, thief, id, 1, ""));
            err = abi.encodeWithSignature("ERC1155MissingApprovalForAll(address,address)", thief, holder);
        }
        ++ghost_attacksTried;
        vm.prank(caller);
        (bool ok, bytes memory got) = address(certificates).call(call);
        if (ok) ++ghost_attacksAccepted;
        else if (keccak256(got) != keccak256(err)) ++ghost_wrongError;
    }

    /// Double issuance through a late trade: the operator adds a trade of an issued
    /// seller-hour to an open round; addTrades must withdraw it (TradeWithdrawn: the
    /// round's trades unchanged, nothing recorded for the hour).
    function attackLateTrade(uint256 seed) external useTime {
        if (settlement.paused() || issuedCount == 0) return;
        (uint64 roundId, bool found) = roundIds.length == 0 ? (0, false) : _openRound(seed);
        if (found && currentTime > settlement.rounds(roundId).deadline) return;
        uint256 id = bound(seed >> 8, 1, issuedCount);
        (address s, uint64 h) = (sellerOf[id], hourOf[id]);
        uint64 slot = h + (slots[0] % 1 hours);
        // A round whose deadline leaves no voting window after the slot would refuse the
        // trade for that (SettlementSlotAfterDeadline) before looking at the hour.
        if (
            found
                && uint256(slot) + SLOT_LENGTH + settlement.MIN_VOTING_WINDOW_S() > settlement.rounds(roundId).deadline
        ) {
            found = false;
        }
        if (!found) {
            // The operator opens a round for it (left open: the base handler may seal it).
            roundId = uint64(roundIds.length + 1);
            vm.prank(OPERATOR);
            uint256 start = currentTime > uint256(slot) + SLOT_LENGTH ? currentTime : uint256(slot) + SLOT_LENGTH;
            settlement.openRound(roundId, keccak256(abi.encode(seed, "late")), uint64(start + 1 days));
            roundIds.push(roundId);
        }
        uint64 deadline = settlement.rounds(roundId).deadline;
        address b = buyers[bound(seed >> 16, 0, N_BUYERS - 1)];
        if (_freeOf(b) < Reference.lockAmount(1000, 250_000, 30_000)) return;
        Settlement.TradeInput memory input;
        input.buy = _orderOf(b, true, slot, 1000, 300_000, 40_000, deadline);
        input.sell = _orderOf(s, false, slot, 1000, 200_000, 0, deadline);
        input.buySignature = _sign(keyOf[b], input.buy);
        input.sellSignature = _sign(keyOf[s], input.sell);
        (input.quantityWh, input.priceMicroEurPerKwh, input.feeMicroEurPerKwh) = (1000, 250_000, 30_000);
        Settlement.TradeInput[] memory chunk = new Settlement.TradeInput[](1);
        chunk[0] = input;
        ++ghost_attacksTried;
        uint32 tradesBefore = settlement.rounds(roundId).trades;
        vm.prank(OPERATOR);
        (bool ok,) = address(settlement).call(abi.encodeCall(settlement.addTrades, (roundId, chunk)));
        if (!ok) ++ghost_wrongError;
        else if (settlement.rounds(roundId).trades != tradesBefore) ++ghost_attacksAccepted;
        else ++ghost_lateTradesRefused;
    }

    // ============================================================ views for the invariants

    function closedHourCount() external view returns (uint256) {
        return closedHours.length;
    }

    /// The hour being traded now.
    function currentHour() external view returns (uint64) {
        return _hourStart(slots[0]);
    }

    /// Wh the model holds verified and not yet issued, over every seller, hour and buyer,
    /// and the contract's pending Wh over the same (they must agree; an issued hour's 0).
    function pendingTotals() external view returns (uint256 model, uint256 onChain) {
        uint256 n = closedHours.length;
        for (uint256 k; k <= n; ++k) {
            uint64 h = k < n ? closedHours[k] : _hourStart(slots[0]);
            for (uint256 i; i < N_SELLERS; ++i) {
                for (uint256 j; j < N_BUYERS; ++j) {
                    model += _pendingOf[sellers[i]][h][buyers[j]];
                    onChain += certificates.pendingWh(sellers[i], h, buyers[j]);
                }
            }
        }
    }

    /// The model's issue request for `s`'s hour `h` with every buyer listed.
    function fullRequest(address s, uint64 h) external view returns (EnergyCertificates.IssueRequest[] memory r) {
        r = new EnergyCertificates.IssueRequest[](1);
        r[0] = EnergyCertificates.IssueRequest(s, h, buyers);
    }

    // ============================================================ internals

    function _slotClosed(uint64 slotStart) internal view override returns (bool) {
        return _closed[_hourStart(slotStart)];
    }

    /// Records each settlement's paid Wh per seller, hour and buyer (the base handler has
    /// checked them against its model of the votes).
    function _onSettled(bytes32 id, uint64 verifiedWh, uint64 paidWh, uint256 toSeller, uint256 fee, uint256 refund)
        internal
        override
    {
        super._onSettled(id, verifiedWh, paidWh, toSeller, fee, refund);
        Settlement.Trade storage t = trades[tradeIndex[id] - 1].record;
        uint64 h = _hourStart(t.slotStart);
        ghost_verifiedOf[t.seller][h] += paidWh;
        _pendingOf[t.seller][h][t.buyer] += paidWh;
    }

    /// A closed seller-hour with verified Wh, no open trade and no certificate yet, or
    /// (s, h) itself if there is none.
    function _ready(address s, uint64 h) internal view returns (address, uint64) {
        for (uint256 k; k < closedHours.length; ++k) {
            uint64 hour = closedHours[k];
            for (uint256 i; i < N_SELLERS; ++i) {
                address seller = sellers[i];
                if (modelIdOf[seller][hour] != 0 || ghost_verifiedOf[seller][hour] == 0) continue;
                if (_openTrades(seller, hour) == 0) return (seller, hour);
            }
        }
        return (s, h);
    }

    /// An actor holding active Wh of a certificate, searched from random starts (actor
    /// and id), and its active Wh (0 if nobody holds any).
    function _holding(uint256 actorSeed, uint256 idSeed) internal view returns (address, uint256, uint256) {
        uint256 a0 = bound(actorSeed, 0, actors.length - 1);
        uint256 i0 = bound(idSeed, 0, issuedCount - 1);
        for (uint256 i; i < issuedCount; ++i) {
            uint256 id = (i0 + i) % issuedCount + 1;
            for (uint256 a; a < actors.length; ++a) {
                address holder = actors[(a0 + a) % actors.length];
                uint256 held = certificates.balanceOf(holder, id);
                if (held > 0) return (holder, id, held);
            }
        }
        return (actors[a0], i0 + 1, 0);
    }

    /// Trades of `s` in hour `h` the model holds open.
    function _openTrades(address s, uint64 h) internal view returns (uint32 open) {
        for (uint256 i; i < trades.length; ++i) {
            Settlement.Trade storage t = trades[i].record;
            if (t.seller != s || _hourStart(t.slotStart) != h) continue;
            if (modelState[trades[i].id] == Settlement.TradeState.Open) ++open;
        }
    }

    /// The request for `s`'s hour `h`: all buyers three times in four, else a random subset
    /// with the first repeated; and the pending Wh of those listed (repeats count once).
    function _request(address s, uint64 h, uint256 maskSeed)
        internal
        view
        returns (EnergyCertificates.IssueRequest[] memory requests, uint256 listedWh)
    {
        uint256 mask = maskSeed % 4 == 0 ? maskSeed >> 8 : type(uint256).max;
        if (maskSeed == type(uint256).max) mask = (1 << N_BUYERS) - 1; // every buyer, once
        address[] memory listed = new address[](N_BUYERS + 1);
        uint256 n = 0;
        for (uint256 i; i < N_BUYERS; ++i) {
            if ((mask >> i) & 1 == 0) continue;
            listed[n++] = buyers[i];
            listedWh += _pendingOf[s][h][buyers[i]];
        }
        if ((mask >> 16) & 1 == 1 && n > 0) listed[n++] = listed[0];
        assembly ("memory-safe") {
            mstore(listed, n)
        }
        requests = new EnergyCertificates.IssueRequest[](1);
        requests[0] = EnergyCertificates.IssueRequest(s, h, listed);
    }

    function _hourStart(uint64 time) internal pure returns (uint64) {
        return time - (time % 1 hours);
    }
}
