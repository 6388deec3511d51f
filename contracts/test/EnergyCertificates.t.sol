// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm} from "./Vm.sol";
import {CertificatesFixture} from "./CertificatesFixture.sol";
import {Settlement} from "../src/Settlement.sol";
import {EnergyCertificates} from "../src/EnergyCertificates.sol";
import {IERC1155} from "@openzeppelin/contracts/token/ERC1155/IERC1155.sol";

/// A contract that refuses every ERC-1155 token sent to it with a receiver check.
contract RefusingHolder {
    function onERC1155Received(address, address, uint256, uint256, bytes calldata) external pure returns (bytes4) {
        return 0xdeadbeef;
    }
}

/// The life of a certificate through the settlement: trades verified by a quorum become
/// one certificate per seller and hour with exactly the verified Wh, held by the buyers;
/// it is transferred in parts and retired for a beneficiary, unit by unit.
contract EnergyCertificatesTest is CertificatesFixture {
    /// Property: two trades of one seller in two quarter-hours of one hour (two buyers)
    /// and one in the next hour settle into two certificates: one per seller and hour,
    /// each with exactly the Wh the quorum verified (the median), minted to the buyers
    /// in proportion to what each received; the production interval spans the slots.
    function test_SettledTradesBecomeOneCertificatePerSellerAndHour() public {
        Settlement.TradeInput[] memory inputs = new Settlement.TradeInput[](3);
        inputs[0] = tradeIn(buyer, seller, SLOT_START, 4000);
        inputs[1] = tradeIn(buyer2, seller, SLOT_START + QUARTER, 6000);
        inputs[2] = tradeIn(buyer, seller, SLOT_START + 1 hours, 2000);
        Settlement.Trade[] memory trades = runRound(1, inputs);
        voteBy(3, trades[0], 3900);
        voteBy(3, trades[1], 6000);
        voteBy(3, trades[2], 1500);
        assertEq(certificates.totalValidatedWh(), settlement.totalPaidWh(), "validated == paid");

        vm.expectEmit(true, true, true, true, address(certificates));
        emit EnergyCertificates.CertificateIssued(1, seller, SLOT_START, SLOT_START + 2 * QUARTER, 9900, 1);
        uint256 first = issueOne(seller, HOUR, pair(buyer, buyer2));
        uint256 second = issueOne(seller, HOUR + 1 hours, one(buyer));
        assertEq(first, 1, "first id");
        assertEq(second, 2, "second id");

        EnergyCertificates.Certificate memory c = certificates.certificate(first);
        assertEq(c.device, seller, "device");
        assertEq(c.start, SLOT_START, "interval start: the earliest slot");
        assertEq(c.end, SLOT_START + 2 * QUARTER, "interval end: the latest slot");
        assertEq(c.issuedWh, 9900, "issued == verified");
        assertEq(c.firstUnit, 1, "units from 1");
        assertEq(certificates.balanceOf(buyer, first), 3900, "buyer's verified Wh");
        assertEq(certificates.balanceOf(buyer2, first), 6000, "buyer2's verified Wh");
        assertEq(certificates.balanceOf(seller, first), 0, "the seller sold the attributes with the energy");
        EnergyCertificates.Certificate memory d = certificates.certificate(second);
        assertEq(d.firstUnit, 9901, "unit ranges are consecutive over certificates");
        assertEq(d.issuedWh, 1500, "second hour");
        assertEq(certificates.unitsIssued(), 11_400, "units issued");
        assertEq(certificates.unitsIssued(), settlement.totalPaidWh(), "issued == paid");
        assertEq(certificates.certificateCount(), 2, "two certificates");
        assertEq(energy.balanceOf(buyer, SLOT_START) + energy.balanceOf(buyer, SLOT_START + 1 hours), 5400, "energy");
        EnergyCertificates.Period[] memory ps = certificates.periods(pair(seller, seller), hours2(HOUR, HOUR + 1 hours));
        assertEq(ps[0].certificateId, 1, "period -> id");
        assertEq(ps[1].certificateId, 2, "period -> id");
        assertEq(certificates.pendingWh(seller, HOUR, buyer), 0, "nothing left pending");
    }

    /// Property: issuing is open to anyone (the relayer holds no role) and mints without
    /// asking the holder's code: events are TransferSingle from address 0.
    function test_IssuanceMintsWithTransferEvents() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        voteBy(3, t, QUANTITY);
        vm.expectEmit(true, true, true, true, address(certificates));
        emit IERC1155.TransferSingle(address(settlement), address(0), buyer, 1, QUANTITY);
        issueOne(seller, HOUR, one(buyer));
    }

    /// Property: a reclaimed trade closes its device-hour with no Wh; a settled one next to
    /// it still issues exactly its Wh.
    function test_ReclaimedTradesCountNothing() public {
        Settlement.Trade[] memory trades = runRound(1, two(defaultInput(buyer, seller), defaultInput(buyer2, seller)));
        voteBy(3, trades[0], 7000);
        vm.warp(block.timestamp + ROUND_DURATION + 1);
        settlement.reclaim(trades[1]);
        uint256 id = issueOne(seller, HOUR, pair(buyer, buyer2));
        assertEq(certificates.certificate(id).issuedWh, 7000, "only the verified Wh");
        assertEq(certificates.balanceOf(buyer2, id), 0, "the reclaimed trade's buyer holds none");
    }

    /// Property: transfer in whole or in part (a split): balances move, the issued total
    /// and the claimed balances do not.
    function test_TransferSplitsACertificate() public {
        uint256 id = _issuedDefault();
        vm.prank(buyer);
        certificates.safeTransferFrom(buyer, mallory, id, 2500, "");
        vm.prank(mallory);
        certificates.safeTransferFrom(mallory, buyer2, id, 2500, "");
        vm.prank(buyer);
        certificates.safeTransferFrom(buyer, buyer2, id, 1000, "");
        assertEq(certificates.balanceOf(buyer, id), QUANTITY - 3500, "buyer keeps the rest");
        assertEq(certificates.balanceOf(buyer2, id), 3500, "buyer2 got two parts");
        assertEq(certificates.balanceOf(mallory, id), 0, "passed on whole");
        assertEq(certificates.certificate(id).issuedWh, QUANTITY, "issued unchanged");
    }

    /// Property: a claim retires Wh for a named beneficiary and purpose: the active balance
    /// drops, claimedBalanceOf rises, units are taken in order and named in the event.
    function test_ClaimRetiresUnitsInOrder() public {
        uint256 id = _issuedDefault();
        vm.prank(buyer);
        certificates.safeTransferFrom(buyer, buyer2, id, 4000, "");
        vm.expectEmit(true, true, true, true, address(certificates));
        emit EnergyCertificates.CertificateClaimed(1, id, buyer, 1000, 1, BENEFICIARY, PURPOSE);
        assertEq(claimAs(buyer, id, 1000), 1, "first claim");
        vm.expectEmit(true, true, true, true, address(certificates));
        emit EnergyCertificates.CertificateClaimed(2, id, buyer2, 4000, 1001, unicode"Bäckerei Krume", "own use");
        vm.prank(buyer2);
        certificates.claim(id, 4000, unicode"Bäckerei Krume", "own use");
        assertEq(certificates.balanceOf(buyer, id), QUANTITY - 5000, "active");
        assertEq(certificates.claimedBalanceOf(buyer, id), 1000, "claimed by buyer");
        assertEq(certificates.claimedBalanceOf(buyer2, id), 4000, "claimed by buyer2");
        assertEq(certificates.balanceOf(buyer2, id), 0, "buyer2 retired all it had");
        EnergyCertificates.Certificate memory c = certificates.certificate(id);
        assertEq(c.claimedWh, 5000, "claimed on the certificate");
        assertEq(certificates.totalClaimedWh(), 5000, "total claimed");
        assertEq(certificates.claimCount(), 2, "claims");
        uint256[] memory claimed = certificates.claimedBalanceOfBatch(pair(buyer, buyer2), ids2(id, id));
        assertEq(claimed[0] + claimed[1], 5000, "batch view");
    }

    /// Property: an operator the holder approved for all may claim on its behalf; the
    /// claimed balance is the holder's.
    function test_ApprovedOperatorClaimsForTheHolder() public {
        uint256 id = _issuedDefault();
        vm.prank(buyer);
        certificates.setApprovalForAll(relayer, true);
        vm.prank(relayer);
        certificates.claimFrom(buyer, id, 300, BENEFICIARY, PURPOSE);
        assertEq(certificates.claimedBalanceOf(buyer, id), 300, "the holder's claim");
        assertEq(certificates.claimedBalanceOf(relayer, id), 0, "not the operator's");
    }

    /// Property: a holder may retire everything it holds; the certificate is then fully
    /// claimed and nothing of it is active anywhere.
    function test_FullRetirement() public {
        uint256 id = _issuedDefault();
        claimAs(buyer, id, QUANTITY);
        EnergyCertificates.Certificate memory c = certificates.certificate(id);
        assertEq(c.claimedWh, c.issuedWh, "all claimed");
        assertEq(certificates.balanceOf(buyer, id), 0, "nothing active");
    }

    /// Property: issuance does not ask a holder's code; transfers to a contract do (the
    /// ERC-1155 receiver check), so a refusing contract can hold but not receive.
    function test_IssuanceToAContractHolderSkipsTheReceiverCheck() public {
        RefusingHolder holder = new RefusingHolder();
        EnergyCertificates own = new EnergyCertificates(address(this));
        own.recordTrade(seller, SLOT_START, SLOT_END);
        own.recordOutcome(seller, SLOT_START, address(holder), 500);
        uint256[] memory ids = own.issue(requestOf(seller, HOUR, one(address(holder))));
        assertEq(own.balanceOf(address(holder), ids[0]), 500, "held");
        own.recordTrade(seller, SLOT_START + 1 hours, SLOT_END + 1 hours);
        own.recordOutcome(seller, SLOT_START + 1 hours, buyer, 10);
        ids = own.issue(requestOf(seller, HOUR + 1 hours, one(buyer)));
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSignature("ERC1155InvalidReceiver(address)", address(holder)));
        own.safeTransferFrom(buyer, address(holder), ids[0], 10, "");
    }

    /// Property: a slot longer than an hour gives one certificate for the whole slot,
    /// keyed by the hour it starts in.
    function test_ALongSlotIsOneCertificate() public {
        Settlement.Order memory b = buyOrder(buyer, 5000);
        Settlement.Order memory s = sellOrder(seller, 5000);
        (b.slotEnd, s.slotEnd) = (SLOT_START + 4 hours, SLOT_START + 4 hours);
        Settlement.Trade[] memory trades = runRound(1, one(tradeInput(b, s, 5000, PRICE, FEE)));
        voteBy(3, trades[0], 5000);
        uint256 id = issueOne(seller, HOUR, one(buyer));
        EnergyCertificates.Certificate memory c = certificates.certificate(id);
        assertEq(c.end - c.start, 4 hours, "the slot's interval");
    }

    /// Gas of the settlement's certificate steps, printed for the README (forge -vv).
    function test_GasOfIssueAndClaim() public {
        Settlement.Trade[] memory trades = runRound(1, two(defaultInput(buyer, seller), defaultInput(buyer2, seller)));
        voteBy(3, trades[0], QUANTITY);
        voteBy(3, trades[1], QUANTITY);
        uint256 before = gasleft();
        vm.prank(relayer);
        uint256 id = settlement.issueCertificates(requestOf(seller, HOUR, pair(buyer, buyer2)))[0];
        uint256 issueGas = before - gasleft();
        before = gasleft();
        claimAs(buyer, id, 1000);
        uint256 claimGas = before - gasleft();
        // Rough bounds so a regression shows; the exact numbers go to the log.
        assertLe(issueGas, 250_000, "issue of a two-holder certificate");
        assertLe(claimGas, 120_000, "claim");
        emit log_named_uint("gas: issueCertificates, one certificate, two holders", issueGas);
        emit log_named_uint("gas: claim", claimGas);
    }

    event log_named_uint(string key, uint256 val);

    // ------------------------------------------------------------ fuzz

    /// Property: whatever the verified deliveries of up to four trades of one seller-hour
    /// (two buyers), the certificate holds exactly their sum, each buyer its own part,
    /// and equals the settlement's paid Wh.
    function testFuzz_IssuedEqualsVerified(uint256 seed) public {
        uint256 n = bound(seed, 1, 4);
        Settlement.TradeInput[] memory inputs = new Settlement.TradeInput[](n);
        for (uint256 i; i < n; ++i) {
            uint64 q = uint64(bound(uint256(keccak256(abi.encode(seed, i))), 1, 20_000));
            inputs[i] = tradeIn(i % 2 == 0 ? buyer : buyer2, seller, SLOT_START + uint64(i % 3) * QUARTER, q);
        }
        Settlement.Trade[] memory trades = runRound(1, inputs);
        uint256[2] memory expected;
        for (uint256 i; i < n; ++i) {
            uint64 q = trades[i].quantityWh;
            uint64 wh = uint64(bound(uint256(keccak256(abi.encode(seed, i, "wh"))), 0, 2 * uint256(q)));
            voteBy(3, trades[i], wh);
            expected[i % 2] += wh < q ? wh : q;
        }
        if (expected[0] + expected[1] == 0) {
            vm.expectRevert(
                abi.encodeWithSelector(EnergyCertificates.EnergyCertificatesNothingToIssue.selector, seller, HOUR)
            );
            issueOne(seller, HOUR, pair(buyer, buyer2));
            return;
        }
        uint256 id = issueOne(seller, HOUR, pair(buyer, buyer2));
        assertEq(certificates.certificate(id).issuedWh, expected[0] + expected[1], "issued == verified");
        assertEq(certificates.certificate(id).issuedWh, settlement.totalPaidWh(), "issued == paid");
        assertEq(certificates.balanceOf(buyer, id), expected[0], "buyer");
        assertEq(certificates.balanceOf(buyer2, id), expected[1], "buyer2");
    }

    /// Property: any sequence of partial transfers and claims keeps active + claimed ==
    /// issued, and each claim takes the next units in order.
    function testFuzz_SplitsAndClaimsConserveTheCertificate(uint256 seed) public {
        uint256 id = _issuedDefault();
        address[3] memory holders = [buyer, buyer2, mallory];
        uint256 claimed = 0;
        for (uint256 step; step < 6; ++step) {
            uint256 r = uint256(keccak256(abi.encode(seed, step)));
            address from = holders[r % 3];
            uint256 held = certificates.balanceOf(from, id);
            if (held == 0) continue;
            uint64 wh = uint64(bound(r >> 8, 1, held));
            if ((r >> 80) % 2 == 0) {
                vm.prank(from);
                certificates.safeTransferFrom(from, holders[(r >> 88) % 3], id, wh, "");
            } else {
                vm.recordLogs();
                claimAs(from, id, wh);
                Vm.Log[] memory logs = vm.getRecordedLogs();
                (uint64 loggedWh, uint64 firstUnit,,) =
                    abi.decode(logs[logs.length - 1].data, (uint64, uint64, string, string));
                assertEq(loggedWh, wh, "claimed Wh");
                assertEq(firstUnit, 1 + claimed, "next units");
                claimed += wh;
            }
        }
        uint256 active = 0;
        uint256 claimedSum = 0;
        for (uint256 i; i < 3; ++i) {
            active += certificates.balanceOf(holders[i], id);
            claimedSum += certificates.claimedBalanceOf(holders[i], id);
        }
        assertEq(claimedSum, claimed, "claimed balances");
        assertEq(active + claimedSum, QUANTITY, "active + claimed == issued");
        assertEq(certificates.certificate(id).claimedWh, claimed, "certificate's claimed");
    }

    // ------------------------------------------------------------ helpers

    /// The default trade settled in full and its certificate issued to the buyer.
    function _issuedDefault() internal returns (uint256) {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        voteBy(3, t, QUANTITY);
        return issueOne(seller, HOUR, one(buyer));
    }

    function hours2(uint64 a, uint64 b) internal pure returns (uint64[] memory arr) {
        arr = new uint64[](2);
        (arr[0], arr[1]) = (a, b);
    }

    function ids2(uint256 a, uint256 b) internal pure returns (uint256[] memory arr) {
        arr = new uint256[](2);
        (arr[0], arr[1]) = (a, b);
    }
}
