// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {CertificatesFixture} from "./CertificatesFixture.sol";
import {Settlement} from "../src/Settlement.sol";
import {EnergyCertificates} from "../src/EnergyCertificates.sol";

/// One test per attack on the certificates: issuing without the settlement, issuing a
/// device-hour twice (directly or through a late trade), issuing before its trades are
/// final or for fewer Wh than verified, moving or re-claiming retired Wh, claiming more
/// than held, claiming or moving someone else's; each refused with its exact error.
contract EnergyCertificatesAttacksTest is CertificatesFixture {
    // ------------------------------------------------------------ the issuer

    /// Attack: an outsider records a trade, a verified delivery, or issues directly.
    function test_RevertIf_NotTheIssuerRecordsOrIssues() public {
        bytes memory err = abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesNotIssuer.selector, mallory);
        vm.startPrank(mallory);
        vm.expectRevert(err);
        certificates.recordTrade(mallory, SLOT_START, SLOT_END);
        vm.expectRevert(err);
        certificates.recordOutcome(mallory, SLOT_START, mallory, 1e9);
        vm.expectRevert(err);
        certificates.issue(requestOf(mallory, HOUR, one(mallory)));
        vm.stopPrank();
        // Nor the settlement's admin or operator: only the settlement contract itself.
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesNotIssuer.selector, admin));
        certificates.recordOutcome(seller, SLOT_START, buyer, 1);
        assertEq(certificates.issuer(), address(settlement), "issuer fixed at deployment");
    }

    /// Attack: a device-hour issued a second time (the same request again).
    function test_RevertIf_IssuedTwice() public {
        uint256 id = _settledDefault();
        vm.expectRevert(
            abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesAlreadyIssued.selector, seller, HOUR, id)
        );
        issueOne(seller, HOUR, one(buyer));
        assertEq(certificates.balanceOf(buyer, id), QUANTITY, "issued once");
    }

    /// Attack: the same device-hour twice in one batch.
    function test_RevertIf_IssuedTwiceInOneBatch() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        voteBy(3, t, QUANTITY);
        EnergyCertificates.IssueRequest[] memory requests = new EnergyCertificates.IssueRequest[](2);
        requests[0] = EnergyCertificates.IssueRequest(seller, HOUR, one(buyer));
        requests[1] = requests[0];
        vm.expectRevert(
            abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesAlreadyIssued.selector, seller, HOUR, 1)
        );
        issue(requests);
        assertEq(certificates.certificateCount(), 0, "the batch reverted whole");
    }

    /// Attack: double issuance through a late trade: after the hour is certified the
    /// operator adds another trade of the same seller and hour (which would verify more
    /// Wh than the certificate holds): it is withdrawn, and the rest of the chunk stays
    /// (anyone may certify an hour, so reverting the chunk would let anyone block it).
    function test_ATradeOfACertifiedHourIsWithdrawn() public {
        _settledDefault();
        Settlement.TradeInput memory late = tradeIn(buyer, seller, SLOT_START + QUARTER, 1000);
        openRound(2);
        bytes32 tradeId = settlement.tradeIdOf(2, settlement.orderHash(late.buy), settlement.orderHash(late.sell));
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.TradeWithdrawn(2, tradeId, seller, Settlement.WithdrawReason.HourCertified);
        addTrades(2, two(late, tradeIn(buyer2, seller2, SLOT_START + QUARTER, 1000)));
        assertEq(settlement.rounds(2).trades, 1, "only the other seller's trade is in");
        // Another seller, or the next hour, is still open for trade.
        addTrade(2, tradeIn(buyer, seller2, SLOT_START, 1000));
        addTrade(2, tradeIn(buyer, seller, SLOT_START + 1 hours, 1000));
    }

    /// Attack: issuing while a trade of the device-hour is still open (more Wh may come).
    function test_RevertIf_IssuedBeforeItsTradesAreFinal() public {
        Settlement.Trade[] memory trades = runRound(1, two(defaultInput(buyer, seller), defaultInput(buyer2, seller)));
        voteBy(3, trades[0], QUANTITY);
        vm.expectRevert(
            abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesPeriodOpen.selector, seller, HOUR, 1)
        );
        issueOne(seller, HOUR, pair(buyer, buyer2));
    }

    /// Attack: a trade sits in a round never sealed: its hour cannot be issued until the
    /// trade is reclaimed after the deadline.
    function test_RevertIf_IssuedWhileARoundIsOpen() public {
        openRound(1);
        addTrade(1, defaultInput(buyer, seller));
        vm.expectRevert(
            abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesPeriodOpen.selector, seller, HOUR, 1)
        );
        issueOne(seller, HOUR, one(buyer));
    }

    /// Attack: issuing with a holder left out (fewer Wh than verified), or with a holder
    /// repeated in its place (a repeat gets nothing).
    function test_RevertIf_AHolderIsLeftOut() public {
        Settlement.Trade[] memory trades = runRound(1, two(defaultInput(buyer, seller), defaultInput(buyer2, seller)));
        settleAll(trades, whs2(QUANTITY, 4000));
        vm.expectRevert(
            abi.encodeWithSelector(
                EnergyCertificates.EnergyCertificatesHoldersIncomplete.selector, seller, HOUR, QUANTITY, 14_000
            )
        );
        issueOne(seller, HOUR, one(buyer));
        vm.expectRevert(
            abi.encodeWithSelector(
                EnergyCertificates.EnergyCertificatesHoldersIncomplete.selector, seller, HOUR, QUANTITY, 14_000
            )
        );
        issueOne(seller, HOUR, pair(buyer, buyer));
        // Listing someone who received nothing adds nothing (and is harmless).
        address[] memory three = new address[](3);
        (three[0], three[1], three[2]) = (mallory, buyer2, buyer);
        uint256 id = issueOne(seller, HOUR, three);
        assertEq(certificates.balanceOf(mallory, id), 0, "mallory received no energy");
    }

    /// Attack: a certificate for a device-hour nobody verified anything for (all trades
    /// reclaimed, votes of 0 Wh, or no trade at all).
    function test_RevertIf_NothingWasVerified() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        voteBy(3, t, 0);
        bytes memory err =
            abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesNothingToIssue.selector, seller, HOUR);
        vm.expectRevert(err);
        issueOne(seller, HOUR, one(buyer));
        vm.expectRevert(
            abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesNothingToIssue.selector, mallory, HOUR)
        );
        issueOne(mallory, HOUR, one(mallory));
    }

    /// Attack: an hour key that is not the start of an hour (a second id for the same
    /// device-hour under another key).
    function test_RevertIf_TheHourIsNotAnHourStart() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        voteBy(3, t, QUANTITY);
        vm.expectRevert(abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesNotAnHour.selector, SLOT_START));
        issueOne(seller, SLOT_START, one(buyer));
    }

    /// Attack: the issuer reports the outcome of a trade it never recorded (an issuer bug
    /// must not mint): refused.
    function test_RevertIf_AnOutcomeHasNoTrade() public {
        EnergyCertificates own = new EnergyCertificates(address(this));
        vm.expectRevert(abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesNoOpenTrade.selector, seller, HOUR));
        own.recordOutcome(seller, SLOT_START, buyer, 100);
    }

    /// Attack: issuance while the settlement is paused.
    function test_RevertIf_IssuedWhilePaused() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        voteBy(3, t, QUANTITY);
        vm.prank(admin);
        settlement.pause();
        vm.expectRevert(abi.encodeWithSignature("EnforcedPause()"));
        issueOne(seller, HOUR, one(buyer));
    }

    /// Attack: a certificates contract without an issuer.
    function test_RevertIf_DeployedWithoutIssuer() public {
        vm.expectRevert(EnergyCertificates.EnergyCertificatesZeroIssuer.selector);
        new EnergyCertificates(address(0));
    }

    // ------------------------------------------------------------ holders

    /// Attack: moving claimed Wh: after retiring part, transferring more than the active
    /// rest; after retiring all, transferring any.
    function test_RevertIf_ClaimedWhAreMoved() public {
        uint256 id = _settledDefault();
        claimAs(buyer, id, 6000);
        vm.startPrank(buyer);
        vm.expectRevert(
            abi.encodeWithSignature(
                "ERC1155InsufficientBalance(address,uint256,uint256,uint256)", buyer, 4000, 4001, id
            )
        );
        certificates.safeTransferFrom(buyer, buyer2, id, 4001, "");
        certificates.claim(id, 4000, BENEFICIARY, PURPOSE);
        vm.expectRevert(
            abi.encodeWithSignature("ERC1155InsufficientBalance(address,uint256,uint256,uint256)", buyer, 0, 1, id)
        );
        certificates.safeTransferFrom(buyer, buyer2, id, 1, "");
        vm.stopPrank();
        assertEq(certificates.claimedBalanceOf(buyer, id), QUANTITY, "claimed stays");
    }

    /// Attack: claiming the same Wh twice, or more than held.
    function test_RevertIf_MoreIsClaimedThanHeld() public {
        uint256 id = _settledDefault();
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(
                EnergyCertificates.EnergyCertificatesInsufficientActive.selector, buyer, id, QUANTITY, QUANTITY + 1
            )
        );
        certificates.claim(id, QUANTITY + 1, BENEFICIARY, PURPOSE);
        claimAs(buyer, id, QUANTITY);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesInsufficientActive.selector, buyer, id, 0, 1)
        );
        certificates.claim(id, 1, BENEFICIARY, PURPOSE);
    }

    /// Attack: mallory claims or transfers the buyer's certificate without approval, and
    /// claims one she does not hold.
    function test_RevertIf_SomeoneElsesCertificateIsClaimedOrMoved() public {
        uint256 id = _settledDefault();
        vm.startPrank(mallory);
        vm.expectRevert(abi.encodeWithSignature("ERC1155MissingApprovalForAll(address,address)", mallory, buyer));
        certificates.claimFrom(buyer, id, 1, BENEFICIARY, PURPOSE);
        vm.expectRevert(abi.encodeWithSignature("ERC1155MissingApprovalForAll(address,address)", mallory, buyer));
        certificates.safeTransferFrom(buyer, mallory, id, 1, "");
        vm.expectRevert(
            abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesInsufficientActive.selector, mallory, id, 0, 1)
        );
        certificates.claim(id, 1, BENEFICIARY, PURPOSE);
        vm.stopPrank();
        // An approval withdrawn is an approval gone.
        vm.prank(buyer);
        certificates.setApprovalForAll(mallory, true);
        vm.prank(buyer);
        certificates.setApprovalForAll(mallory, false);
        vm.prank(mallory);
        vm.expectRevert(abi.encodeWithSignature("ERC1155MissingApprovalForAll(address,address)", mallory, buyer));
        certificates.claimFrom(buyer, id, 1, BENEFICIARY, PURPOSE);
        assertEq(certificates.balanceOf(buyer, id), QUANTITY, "untouched");
    }

    /// Attack: claims of nothing, of an unknown certificate, without a beneficiary or
    /// purpose, or with texts beyond the bounds.
    function test_RevertIf_AClaimIsMalformed() public {
        uint256 id = _settledDefault();
        vm.startPrank(buyer);
        vm.expectRevert(EnergyCertificates.EnergyCertificatesZeroAmount.selector);
        certificates.claim(id, 0, BENEFICIARY, PURPOSE);
        vm.expectRevert(abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesUnknownCertificate.selector, 2));
        certificates.claim(2, 1, BENEFICIARY, PURPOSE);
        vm.expectRevert(abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesBadClaimText.selector, 0, 7));
        certificates.claim(id, 1, "", "own use");
        vm.expectRevert(abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesBadClaimText.selector, 4, 0));
        certificates.claim(id, 1, "ACME", "");
        string memory long = string(new bytes(257));
        vm.expectRevert(abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesBadClaimText.selector, 3, 257));
        certificates.claim(id, 1, "ACM", long);
        vm.expectRevert(abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesBadClaimText.selector, 129, 1));
        certificates.claim(id, 1, string(new bytes(129)), "x");
        vm.stopPrank();
        // At the bounds it goes through.
        vm.prank(buyer);
        certificates.claim(id, 1, string(new bytes(128)), string(new bytes(256)));
    }

    // ------------------------------------------------------------ helpers

    /// The default trade settled in full and its certificate issued to the buyer.
    function _settledDefault() internal returns (uint256) {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        voteBy(3, t, QUANTITY);
        return issueOne(seller, HOUR, one(buyer));
    }
}
