// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "./Vm.sol";
import {CertificatesHandler} from "./handlers/CertificatesHandler.sol";
import {EnergyCertificates} from "../src/EnergyCertificates.sol";

/// Invariants of the certificates over random sequences of {CertificatesHandler} actions
/// (the handler is the issuer: trades recorded, outcomes, issuance with complete and
/// incomplete holder lists, transfers and splits, claims by holders and operators, and
/// refused attacks). Cheap calls, so the full campaign runs 10,000 sequences of 25 calls;
/// one invariant function checks every property after each call (each invariant function
/// would be a campaign of its own).
/// forge-config: default.invariant.runs = 10000
/// forge-config: default.invariant.depth = 25
/// forge-config: ci.invariant.runs = 256
/// forge-config: ci.invariant.depth = 25
contract EnergyCertificatesInvariantTest is TestBase {
    CertificatesHandler internal handler;
    EnergyCertificates internal certificates;
    /// Every account that can hold a certificate (copied once: fewer calls per check).
    address[] internal holders;

    function setUp() public {
        vm.warp(1_750_000_000);
        handler = new CertificatesHandler();
        certificates = handler.certificates();
        holders = handler.allHolders();
        targetContract(address(handler));
    }

    /// After every call: issued == verified, active + claimed == issued per certificate,
    /// claimed Wh never move, every attack refused.
    function invariant_certificates() public view {
        _issuedEqualsVerified();
        _activePlusClaimedEqualsIssued();
        _claimedNeverMoves();
        _attacksRefused();
    }

    /// Issued Wh == verified Wh: the contract's verified total is the issuer's reports;
    /// every certificate holds exactly its device-hour's verified Wh; units issued are the
    /// sum of the certificates; verified Wh not issued yet wait, per holder, exactly as
    /// the model has them (none for an issued hour).
    function _issuedEqualsVerified() internal view {
        assertEq(certificates.totalValidatedWh(), handler.ghost_validated(), "verified == reported");
        uint256 issued = 0;
        uint256 n = certificates.certificateCount();
        assertEq(n, handler.issuedCount(), "certificates == issuances");
        for (uint256 id = 1; id <= n; ++id) {
            uint256 wh = certificates.certificate(id).issuedWh;
            assertEq(wh, handler.modelIssuedWh(id), "certificate == its hour's verified Wh");
            issued += wh;
        }
        assertEq(certificates.unitsIssued(), issued, "units == sum of certificates");
        assertEq(issued, handler.ghost_issued(), "issued == model");
        (uint256 model, uint256 onChain) = handler.pendingTotals();
        assertEq(onChain, model, "pending per holder as the model's");
        assertEq(issued + model, handler.ghost_validated(), "issued + pending == verified");
        assertEq(handler.ghost_issueMismatch(), 0, "a mint or claim differed from the model");
    }

    /// Per certificate: active (every holder's balance) + claimed == issued, and the
    /// certificate's claimed Wh are its holders' claimed balances.
    function _activePlusClaimedEqualsIssued() internal view {
        uint256 n = certificates.certificateCount();
        for (uint256 id = 1; id <= n; ++id) {
            uint256[] memory ids = _repeat(id);
            uint256 active = _sum(certificates.balanceOfBatch(holders, ids));
            uint256 claimed = _sum(certificates.claimedBalanceOfBatch(holders, ids));
            EnergyCertificates.Certificate memory c = certificates.certificate(id);
            assertEq(claimed, c.claimedWh, "claimed balances == certificate's claimed");
            assertEq(active + claimed, c.issuedWh, "active + claimed == issued");
        }
    }

    /// Claimed Wh never decrease and never move: each holder's claimed balance is exactly
    /// what it retired itself (no transfer, approval or attack changes it).
    function _claimedNeverMoves() internal view {
        uint256 n = certificates.certificateCount();
        uint256 total = 0;
        for (uint256 id = 1; id <= n; ++id) {
            uint256[] memory claimed = certificates.claimedBalanceOfBatch(holders, _repeat(id));
            uint256[] memory retired = handler.ghostClaimedOf(id);
            for (uint256 i; i < holders.length; ++i) {
                assertEq(claimed[i], retired[i], "claimed == what the holder retired");
                total += claimed[i];
            }
        }
        assertEq(certificates.totalClaimedWh(), handler.ghost_claimed(), "total claimed");
        assertEq(total, handler.ghost_claimed(), "sum of claimed balances");
    }

    function _repeat(uint256 id) internal view returns (uint256[] memory ids) {
        ids = new uint256[](holders.length);
        for (uint256 i; i < ids.length; ++i) {
            ids[i] = id;
        }
    }

    function _sum(uint256[] memory values) internal pure returns (uint256 total) {
        for (uint256 i; i < values.length; ++i) {
            total += values[i];
        }
    }

    /// Every attack was refused, with its exact error.
    function _attacksRefused() internal view {
        assertEq(handler.ghost_attacksAccepted(), 0, "an attack went through");
        assertEq(handler.ghost_wrongError(), 0, "an attack was refused for the wrong reason");
    }
}
