// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "../Vm.sol";
import {EnergyCertificates} from "../../src/EnergyCertificates.sol";

/// The certificates alone, with this handler as their issuer (standing in for the
/// settlement): every public function is one action of the issuer (trades recorded,
/// outcomes reported, hours issued), a holder (transfers, splits, approvals, claims) or
/// an attacker. It never reverts (fail_on_revert): valid calls are predicted valid by its
/// model, and calls the model says must fail go through try/catch, counted in
/// ghost_attacksAccepted when they pass and ghost_wrongError when refused for another
/// reason. The model keeps every device-hour's open trades, verified Wh per holder, and
/// every holder's claimed Wh, independently of the contract.
contract CertificatesHandler is TestBase {
    // Few device-hours, so that short sequences already close and issue several of them.
    uint256 internal constant N_DEVICES = 2;
    uint256 internal constant N_HOLDERS = 3;
    uint256 internal constant N_HOURS = 3;
    uint64 internal constant BASE_HOUR = 1_750_000_000 - (1_750_000_000 % 3600);
    string internal constant BENEFICIARY = "beneficiary";
    string internal constant PURPOSE = "purpose";

    EnergyCertificates public immutable certificates;
    address[] public devices;
    /// Holders (buyers) and one outsider who never receives a delivery.
    address[] public holders;
    address public constant OUTSIDER = address(0xBAD);

    struct ModelPeriod {
        uint32 open;
        uint64 validated;
        uint256 id;
    }

    struct OpenTrade {
        uint256 device;
        uint256 hour;
        uint64 slotStart;
    }

    mapping(uint256 device => mapping(uint256 hour => ModelPeriod)) internal _model;
    mapping(uint256 device => mapping(uint256 hour => mapping(address holder => uint64))) internal _pending;
    OpenTrade[] internal _open;
    /// Issued ids -> their device-hour (device * N_HOURS + hour + 1).
    mapping(uint256 id => uint256 periodPlusOne) public periodOf;
    uint256 public issuedCount;

    // ------------------------------------------------------------ ghosts
    uint256 public ghost_validated;
    uint256 public ghost_issued;
    uint256 public ghost_claimed;
    mapping(address holder => mapping(uint256 id => uint256)) public ghost_claimedOf;
    uint256 public ghost_attacksTried;
    uint256 public ghost_attacksAccepted;
    uint256 public ghost_wrongError;
    /// Issued certificates whose Wh or holders' mints differ from the model's.
    uint256 public ghost_issueMismatch;
    uint256 public ghost_transfers;
    uint256 public ghost_claims;

    constructor() {
        certificates = new EnergyCertificates(address(this));
        for (uint256 i; i < N_DEVICES; ++i) {
            devices.push(vm.addr(0xDE0000 + i));
        }
        for (uint256 i; i < N_HOLDERS; ++i) {
            holders.push(vm.addr(0xB0B000 + i));
        }
        holders.push(OUTSIDER);
    }

    // ============================================================ issuer

    /// The issuer accepts a trade of a device in a quarter-hour of an hour; refused (with
    /// the exact error) once that device-hour is issued.
    function recordTrade(uint256 deviceSeed, uint256 hourSeed, uint256 slotSeed) external {
        uint256 d = bound(deviceSeed, 0, N_DEVICES - 1);
        uint256 h = bound(hourSeed, 0, N_HOURS - 1);
        uint64 slotStart = _hourStart(h) + uint64(bound(slotSeed, 0, 3)) * 15 minutes;
        ModelPeriod storage p = _model[d][h];
        if (p.id != 0) {
            _expectRevert(
                abi.encodeCall(certificates.recordTrade, (devices[d], slotStart, slotStart + 15 minutes)),
                address(this),
                abi.encodeWithSelector(
                    EnergyCertificates.EnergyCertificatesAlreadyIssued.selector, devices[d], _hourStart(h), p.id
                )
            );
            return;
        }
        certificates.recordTrade(devices[d], slotStart, slotStart + 15 minutes);
        ++p.open;
        _open.push(OpenTrade(d, h, slotStart));
    }

    /// Every open trade of one device-hour (one with open trades, if any) becomes final,
    /// as when a round's votes all come in: the hour is then ready to issue.
    function closeHour(uint256 deviceSeed, uint256 hourSeed, uint256 seed) external {
        if (_open.length == 0) return;
        OpenTrade memory first = _open[bound(deviceSeed ^ hourSeed, 0, _open.length - 1)];
        uint256 k = 0;
        while (k < _open.length) {
            OpenTrade memory t = _open[k];
            if (t.device != first.device || t.hour != first.hour) {
                ++k;
                continue;
            }
            seed = uint256(keccak256(abi.encode(seed, k)));
            _outcome(k, seed, seed >> 16);
        }
    }

    /// An open trade becomes final: verified for 0..5000 Wh to a holder (one time in four
    /// reclaimed: nothing verified).
    function recordOutcome(uint256 tradeSeed, uint256 holderSeed, uint256 whSeed) external {
        if (_open.length == 0) {
            // No trade open anywhere: reporting an outcome is an issuer bug, refused.
            _expectRevert(
                abi.encodeCall(certificates.recordOutcome, (devices[0], _hourStart(0), holders[0], 1)),
                address(this),
                abi.encodeWithSelector(
                    EnergyCertificates.EnergyCertificatesNoOpenTrade.selector, devices[0], _hourStart(0)
                )
            );
            return;
        }
        _outcome(bound(tradeSeed, 0, _open.length - 1), holderSeed, whSeed);
    }

    /// Reports the outcome of open trade `k` (removing it from the open list).
    function _outcome(uint256 k, uint256 holderSeed, uint256 whSeed) internal {
        OpenTrade memory t = _open[k];
        _open[k] = _open[_open.length - 1];
        _open.pop();
        address holder = holders[bound(holderSeed, 0, N_HOLDERS - 1)];
        uint64 wh = whSeed % 4 == 0 ? 0 : uint64(bound(whSeed >> 8, 0, 5000));
        certificates.recordOutcome(devices[t.device], t.slotStart, holder, wh);
        ModelPeriod storage p = _model[t.device][t.hour];
        --p.open;
        p.validated += wh;
        _pending[t.device][t.hour][holder] += wh;
        ghost_validated += wh;
    }

    /// Issue a device-hour listing a random subset of the holders (and the outsider): a
    /// mint when the model says the hour is closed, verified and completely listed; else
    /// the exact refusal (issued already, open, nothing verified, a holder left out).
    function issue(uint256 deviceSeed, uint256 hourSeed, uint256 maskSeed) external {
        uint256 d = bound(deviceSeed, 0, N_DEVICES - 1);
        uint256 h = bound(hourSeed, 0, N_HOURS - 1);
        // Three times in four a device-hour ready to issue, if there is one.
        if ((maskSeed >> 32) % 4 != 0) (d, h) = _ready(d, h);
        // Three times in four every holder is listed, else a random subset (with repeats).
        uint256 mask = maskSeed % 4 == 0 ? maskSeed >> 8 : type(uint256).max;
        address[] memory listed = new address[](holders.length + 1);
        uint256 n = 0;
        uint256 listedWh = 0;
        for (uint256 i; i < holders.length; ++i) {
            if ((mask >> i) & 1 == 0) continue;
            listed[n++] = holders[i];
            listedWh += _pending[d][h][holders[i]];
        }
        if ((mask >> 16) & 1 == 1 && n > 0) listed[n++] = listed[0]; // a repeat gets nothing
        assembly ("memory-safe") {
            mstore(listed, n)
        }
        EnergyCertificates.IssueRequest[] memory requests = new EnergyCertificates.IssueRequest[](1);
        requests[0] = EnergyCertificates.IssueRequest(devices[d], _hourStart(h), listed);
        ModelPeriod storage p = _model[d][h];
        bytes memory err;
        if (p.id != 0) {
            err = abi.encodeWithSelector(
                EnergyCertificates.EnergyCertificatesAlreadyIssued.selector, devices[d], _hourStart(h), p.id
            );
        } else if (p.open != 0) {
            err = abi.encodeWithSelector(
                EnergyCertificates.EnergyCertificatesPeriodOpen.selector, devices[d], _hourStart(h), p.open
            );
        } else if (p.validated == 0) {
            err = abi.encodeWithSelector(
                EnergyCertificates.EnergyCertificatesNothingToIssue.selector, devices[d], _hourStart(h)
            );
        } else if (listedWh != p.validated) {
            err = abi.encodeWithSelector(
                EnergyCertificates.EnergyCertificatesHoldersIncomplete.selector,
                devices[d],
                _hourStart(h),
                listedWh,
                p.validated
            );
        }
        if (err.length > 0) {
            _expectRevert(abi.encodeCall(certificates.issue, (requests)), address(this), err);
            return;
        }
        uint256 id = certificates.issue(requests)[0];
        p.id = id;
        periodOf[id] = d * N_HOURS + h + 1;
        ++issuedCount;
        ghost_issued += p.validated;
        if (id != issuedCount || certificates.certificate(id).issuedWh != p.validated) ++ghost_issueMismatch;
        for (uint256 i; i < holders.length; ++i) {
            if (certificates.balanceOf(holders[i], id) != _pending[d][h][holders[i]]) ++ghost_issueMismatch;
            _pending[d][h][holders[i]] = 0;
        }
    }

    // ============================================================ holders

    /// A holder passes part (or all) of a certificate to another account: a split.
    function transfer(uint256 fromSeed, uint256 toSeed, uint256 idSeed, uint256 amountSeed) external {
        if (issuedCount == 0) return;
        address from = holders[bound(fromSeed, 0, holders.length - 1)];
        address to = holders[bound(toSeed, 0, holders.length - 1)];
        uint256 id = bound(idSeed, 1, issuedCount);
        uint256 held = certificates.balanceOf(from, id);
        if (held == 0) return;
        vm.prank(from);
        certificates.safeTransferFrom(from, to, id, bound(amountSeed, 1, held), "");
        ++ghost_transfers;
    }

    /// A holder (or an operator it approved) retires part of its active Wh.
    function claim(uint256 holderSeed, uint256 idSeed, uint256 whSeed, bool viaOperator) external {
        if (issuedCount == 0) return;
        address holder = holders[bound(holderSeed, 0, holders.length - 1)];
        uint256 id = bound(idSeed, 1, issuedCount);
        uint256 held = certificates.balanceOf(holder, id);
        if (held == 0) return;
        uint64 wh = uint64(bound(whSeed, 1, held));
        EnergyCertificates.Certificate memory before = certificates.certificate(id);
        if (viaOperator) {
            vm.prank(holder);
            certificates.setApprovalForAll(OUTSIDER, true);
            vm.prank(OUTSIDER);
            certificates.claimFrom(holder, id, wh, BENEFICIARY, PURPOSE);
            vm.prank(holder);
            certificates.setApprovalForAll(OUTSIDER, false);
        } else {
            vm.prank(holder);
            certificates.claim(id, wh, BENEFICIARY, PURPOSE);
        }
        if (certificates.certificate(id).claimedWh != before.claimedWh + wh) ++ghost_issueMismatch;
        ghost_claimedOf[holder][id] += wh;
        ghost_claimed += wh;
        ++ghost_claims;
    }

    // ============================================================ attacks

    /// Attacks, each with the exact error the contract must give: an outsider acting as
    /// the issuer; claiming or moving more than the active Wh (claimed Wh included);
    /// claiming or moving someone else's certificate without approval.
    function attack(uint256 kindSeed, uint256 holderSeed, uint256 idSeed, uint256 extraSeed) external {
        uint256 kind = bound(kindSeed, 0, 4);
        address holder = holders[bound(holderSeed, 0, N_HOLDERS - 1)];
        if (kind == 0) {
            address outsider = address(uint160(bound(extraSeed, 1, type(uint160).max)));
            if (outsider == address(this)) return;
            bytes memory err = abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesNotIssuer.selector, outsider);
            _expectRevert(
                abi.encodeCall(certificates.recordTrade, (devices[0], BASE_HOUR, BASE_HOUR + 1)), outsider, err
            );
            _expectRevert(
                abi.encodeCall(certificates.recordOutcome, (devices[0], BASE_HOUR, outsider, 1)), outsider, err
            );
            return;
        }
        if (issuedCount == 0) return;
        uint256 id = bound(idSeed, 1, issuedCount);
        uint256 held = certificates.balanceOf(holder, id);
        uint256 more = held + bound(extraSeed, 1, 1e6);
        if (kind == 1) {
            _expectRevert(
                abi.encodeCall(certificates.claim, (id, uint64(more), BENEFICIARY, PURPOSE)),
                holder,
                abi.encodeWithSelector(
                    EnergyCertificates.EnergyCertificatesInsufficientActive.selector, holder, id, held, more
                )
            );
        } else if (kind == 2) {
            // Claimed Wh are not in the balance: moving them is moving more than held.
            _expectRevert(
                abi.encodeCall(certificates.safeTransferFrom, (holder, OUTSIDER, id, more, "")),
                holder,
                abi.encodeWithSignature(
                    "ERC1155InsufficientBalance(address,uint256,uint256,uint256)", holder, held, more, id
                )
            );
        } else if (kind == 3) {
            bytes memory err =
                abi.encodeWithSignature("ERC1155MissingApprovalForAll(address,address)", OUTSIDER, holder);
            _expectRevert(abi.encodeCall(certificates.claimFrom, (holder, id, 1, BENEFICIARY, PURPOSE)), OUTSIDER, err);
            _expectRevert(abi.encodeCall(certificates.safeTransferFrom, (holder, OUTSIDER, id, 1, "")), OUTSIDER, err);
        } else {
            // The issuer itself cannot issue a second id for an issued device-hour either.
            uint256 period = periodOf[id] - 1;
            (uint256 d, uint256 h) = (period / N_HOURS, period % N_HOURS);
            EnergyCertificates.IssueRequest[] memory requests = new EnergyCertificates.IssueRequest[](1);
            requests[0] = EnergyCertificates.IssueRequest(devices[d], _hourStart(h), holders);
            _expectRevert(
                abi.encodeCall(certificates.issue, (requests)),
                address(this),
                abi.encodeWithSelector(
                    EnergyCertificates.EnergyCertificatesAlreadyIssued.selector, devices[d], _hourStart(h), id
                )
            );
        }
    }

    // ============================================================ views for the invariants

    function holderCount() external view returns (uint256) {
        return holders.length;
    }

    /// Every holder, in order.
    function allHolders() external view returns (address[] memory) {
        return holders;
    }

    /// What each holder retired of certificate `id`, by the model.
    function ghostClaimedOf(uint256 id) external view returns (uint256[] memory claimed) {
        claimed = new uint256[](holders.length);
        for (uint256 i; i < holders.length; ++i) {
            claimed[i] = ghost_claimedOf[holders[i]][id];
        }
    }

    /// The model's verified Wh of an issued certificate's device-hour.
    function modelIssuedWh(uint256 id) external view returns (uint256) {
        uint256 period = periodOf[id] - 1;
        return _model[period / N_HOURS][period % N_HOURS].validated;
    }

    /// Verified Wh the model holds for device-hours not issued yet, and the contract's
    /// pending Wh over them (they must agree).
    function pendingTotals() external view returns (uint256 model, uint256 onChain) {
        for (uint256 d; d < N_DEVICES; ++d) {
            for (uint256 h; h < N_HOURS; ++h) {
                ModelPeriod storage p = _model[d][h];
                for (uint256 i; i < holders.length; ++i) {
                    uint64 pending = certificates.pendingWh(devices[d], _hourStart(h), holders[i]);
                    if (p.id != 0) {
                        onChain += pending; // must be 0 once issued
                        continue;
                    }
                    model += _pending[d][h][holders[i]];
                    onChain += pending;
                }
            }
        }
    }

    // ============================================================ internals

    /// The first device-hour from (d, h) on that is closed, verified and not issued
    /// (or (d, h) itself if none is).
    function _ready(uint256 d, uint256 h) internal view returns (uint256, uint256) {
        for (uint256 k; k < N_DEVICES * N_HOURS; ++k) {
            uint256 j = (d * N_HOURS + h + k) % (N_DEVICES * N_HOURS);
            ModelPeriod storage p = _model[j / N_HOURS][j % N_HOURS];
            if (p.id == 0 && p.open == 0 && p.validated > 0) return (j / N_HOURS, j % N_HOURS);
        }
        return (d, h);
    }

    function _hourStart(uint256 h) internal pure returns (uint64) {
        return BASE_HOUR + uint64(h) * 1 hours;
    }

    /// `data` sent by `caller` to the certificates must revert with exactly `err`.
    function _expectRevert(bytes memory data, address caller, bytes memory err) internal {
        ++ghost_attacksTried;
        if (caller != address(this)) vm.prank(caller);
        (bool ok, bytes memory got) = address(certificates).call(data);
        if (ok) ++ghost_attacksAccepted;
        else if (keccak256(got) != keccak256(err)) ++ghost_wrongError;
    }
}
