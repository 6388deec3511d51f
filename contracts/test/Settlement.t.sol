// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {Fixture} from "./Fixture.sol";
import {Settlement} from "../src/Settlement.sol";

contract SettlementTest is Fixture {
    uint64 internal constant DEADLINE = 10_000;

    function setUp() public {
        vm.warp(1_000);
        deployAll();
    }

    function test_depositAndWithdrawMoveOnlyFreeBalance() public {
        fund(buyer, 5_000_000);
        assertEq(settlement.freeBalance(buyer), 5_000_000);
        vm.prank(buyer);
        settlement.withdraw(2_000_000);
        assertEq(payment.balanceOf(buyer), 2_000_000);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Settlement.InsufficientBalance.selector, buyer, 4_000_000, 3_000_000));
        settlement.withdraw(4_000_000);
    }

    function test_depositForCreditsEachAccountFromTheCallersTokens() public {
        vm.prank(admin);
        payment.mint(operator, 700);
        address[] memory accounts = new address[](2);
        uint256[] memory amounts = new uint256[](2);
        (accounts[0], accounts[1]) = (buyer, seller);
        (amounts[0], amounts[1]) = (300, 400);
        vm.startPrank(operator);
        payment.approve(address(settlement), 700);
        settlement.depositFor(accounts, amounts);
        vm.stopPrank();
        assertEq(payment.balanceOf(operator), 0);
        assertEq(payment.balanceOf(address(settlement)), 700);
        (uint256[] memory free, uint256[] memory locked) = settlement.balancesOf(accounts);
        assertEq(free[0], 300);
        assertEq(free[1], 400);
        assertEq(locked[0] + locked[1], 0);
        // The credit is the account's: the payer cannot withdraw it.
        assertEq(settlement.freeBalance(operator), 0);
        vm.prank(buyer);
        settlement.withdraw(300);
        assertEq(payment.balanceOf(buyer), 300);
    }

    function test_depositForRejectsMalformedBatches() public {
        address[] memory accounts = new address[](2);
        uint256[] memory amounts = new uint256[](1);
        vm.expectRevert(Settlement.LengthMismatch.selector);
        settlement.depositFor(accounts, amounts);
        amounts = new uint256[](2);
        (accounts[0], accounts[1]) = (buyer, address(0));
        (amounts[0], amounts[1]) = (1, 1);
        vm.expectRevert(Settlement.ZeroAddress.selector);
        settlement.depositFor(accounts, amounts);
        accounts[1] = seller;
        amounts[1] = 0;
        vm.expectRevert(Settlement.ZeroAmount.selector);
        settlement.depositFor(accounts, amounts);
    }

    function test_balancesBeyond128BitsAreRefused() public {
        uint256 tooMuch = uint256(type(uint128).max) + 1;
        vm.prank(admin);
        payment.mint(buyer, tooMuch);
        vm.startPrank(buyer);
        payment.approve(address(settlement), tooMuch);
        vm.expectRevert(abi.encodeWithSelector(Settlement.AmountTooLarge.selector, tooMuch));
        settlement.deposit(tooMuch);
        vm.stopPrank();
    }

    function test_commitLocksQuantityTimesPricePlusFeeRoundedUp() public {
        fund(buyer, 1_000_000);
        // 1,234 Wh at 250,000 + 10,000 micro-EUR/kWh: 320,840 micro-EUR exactly.
        Settlement.Trade memory t = trade(1, 1, 1_234, 250_000, 10_000);
        commitOne(t, DEADLINE, 10, 2);
        assertEq(settlement.lockedBalance(buyer), 320_840);
        assertEq(settlement.freeBalance(buyer), 1_000_000 - 320_840);
        // 1 Wh at 1 micro-EUR/kWh locks 1 micro-EUR, never 0.
        assertEq(settlement.lockAmount(trade(1, 2, 1, 1, 0)), 1);
    }

    function test_aRoundWithAnUnderfundedBuyerIsRejectedWhole() public {
        fund(buyer, 1_000_000);
        address poor = address(0xDEAD);
        Settlement.BuyerLock[] memory locks = new Settlement.BuyerLock[](2);
        locks[0] = Settlement.BuyerLock(buyer, 500_000);
        locks[1] = Settlement.BuyerLock(poor, 1);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Settlement.InsufficientEscrow.selector, poor, 1, 0));
        settlement.commitRound(Settlement.RoundParams(1, bytes32(0), keccak256("root"), DEADLINE, 0, 1), locks);
        assertEq(settlement.lockedBalance(buyer), 0);
        assertEq(settlement.freeBalance(buyer), 1_000_000);
    }

    function test_aQuorumOfAgreeingValidatorsSettlesAndDeliversTokens() public {
        fund(buyer, 1_000_000);
        Settlement.Trade memory t = trade(1, 1, 2_000, 200_000, 10_000); // 420,000 locked
        bytes32[] memory proof = commitOne(t, DEADLINE, 10, 2);
        vm.prank(validator1);
        settlement.attest(t, proof, 2_000, 1_995);
        assertEq(uint256(settlement.tradeState(leaf(t))), uint256(Settlement.TradeState.Open));
        vm.prank(validator2);
        settlement.attest(t, proof, 2_001, 2_000);
        // Verified: the least of the agreeing deliveries, 1,995 Wh.
        assertEq(uint256(settlement.tradeState(leaf(t))), uint256(Settlement.TradeState.Settled));
        assertEq(settlement.freeBalance(seller), 399_000);
        assertEq(settlement.freeBalance(fees), 19_950);
        assertEq(settlement.freeBalance(buyer), 1_000_000 - 399_000 - 19_950);
        assertEq(settlement.lockedBalance(buyer), 0);
        assertEq(energy.balanceOf(buyer, 7), 1_995);
        assertEq(energy.balanceOf(seller, 7), 0);
    }

    function test_aBuyerContractWithoutTokenHooksDoesNotBlockSettlement() public {
        address contractBuyer = address(new NoTokenHooks());
        fund(contractBuyer, 1_000_000);
        Settlement.Trade memory t = trade(1, 1, 2_000, 200_000, 0);
        t.buyer = contractBuyer;
        bytes32[] memory proof = commitOne(t, DEADLINE, 0, 1);
        vm.prank(validator1);
        settlement.attest(t, proof, 2_000, 2_000);
        assertEq(uint256(settlement.tradeState(leaf(t))), uint256(Settlement.TradeState.Settled));
        assertEq(energy.balanceOf(contractBuyer, 7), 2_000);
        assertEq(settlement.freeBalance(seller), 400_000);
    }

    function test_aShortDeliveryPaysOnlyWhatArrivedAndRefundsTheRest() public {
        fund(buyer, 1_000_000);
        Settlement.Trade memory t = trade(1, 1, 2_000, 200_000, 0);
        bytes32[] memory proof = commitOne(t, DEADLINE, 0, 2);
        vm.prank(validator1);
        settlement.attest(t, proof, 1_500, 1_500);
        vm.prank(validator3);
        settlement.attest(t, proof, 1_600, 1_500);
        assertEq(settlement.freeBalance(seller), 300_000);
        assertEq(settlement.freeBalance(buyer), 1_000_000 - 300_000);
        assertEq(energy.balanceOf(buyer, 7), 1_500);
    }

    function test_overDeliveryIsPaidOnlyUpToTheTradedQuantity() public {
        fund(buyer, 1_000_000);
        Settlement.Trade memory t = trade(1, 1, 2_000, 200_000, 0);
        bytes32[] memory proof = commitOne(t, DEADLINE, 0, 1);
        vm.prank(validator1);
        settlement.attest(t, proof, 9_000, 9_000);
        assertEq(settlement.freeBalance(seller), 400_000);
        assertEq(energy.balanceOf(buyer, 7), 2_000);
    }

    function test_disagreeingValidatorsDoNotSettleUntilAQuorumAgrees() public {
        fund(buyer, 1_000_000);
        Settlement.Trade memory t = trade(1, 1, 2_000, 200_000, 0);
        bytes32[] memory proof = commitOne(t, DEADLINE, 5, 2);
        vm.prank(validator1);
        settlement.attest(t, proof, 2_000, 2_000);
        vm.prank(validator2);
        settlement.attest(t, proof, 1_000, 1_000);
        assertEq(uint256(settlement.tradeState(leaf(t))), uint256(Settlement.TradeState.Open));
        vm.prank(validator3);
        settlement.attest(t, proof, 997, 1_001);
        assertEq(settlement.freeBalance(seller), 199_400); // 997 Wh
    }

    function test_onlyValidatorsAttestAndOnlyOnce() public {
        fund(buyer, 1_000_000);
        Settlement.Trade memory t = trade(1, 1, 2_000, 200_000, 0);
        bytes32[] memory proof = commitOne(t, DEADLINE, 0, 2);
        bytes32 role = settlement.VALIDATOR_ROLE();
        vm.prank(seller);
        vm.expectRevert(abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, seller, role));
        settlement.attest(t, proof, 2_000, 2_000);
        vm.prank(validator1);
        settlement.attest(t, proof, 2_000, 2_000);
        vm.prank(validator1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.AlreadyAttested.selector, 1, 1, validator1));
        settlement.attest(t, proof, 2_000, 2_000);
    }

    function test_aSettledTradeCannotBeSettledOrReclaimedAgain() public {
        fund(buyer, 1_000_000);
        Settlement.Trade memory t = trade(1, 1, 2_000, 200_000, 0);
        bytes32[] memory proof = commitOne(t, DEADLINE, 0, 1);
        vm.prank(validator1);
        settlement.attest(t, proof, 2_000, 2_000);
        vm.prank(validator2);
        vm.expectRevert(abi.encodeWithSelector(Settlement.TradeAlreadyFinal.selector, 1, 1));
        settlement.attest(t, proof, 2_000, 2_000);
        vm.warp(DEADLINE + 1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Settlement.TradeAlreadyFinal.selector, 1, 1));
        settlement.reclaim(t, proof);
    }

    function test_withoutAQuorumByTheDeadlineTheBuyerReclaims() public {
        fund(buyer, 1_000_000);
        Settlement.Trade memory t = trade(1, 1, 2_000, 200_000, 0);
        bytes32[] memory proof = commitOne(t, DEADLINE, 0, 2);
        vm.prank(validator1);
        settlement.attest(t, proof, 2_000, 2_000);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Settlement.DeadlineNotPassed.selector, 1, DEADLINE));
        settlement.reclaim(t, proof);
        vm.warp(DEADLINE + 1);
        vm.prank(validator2);
        vm.expectRevert(abi.encodeWithSelector(Settlement.AttestationClosed.selector, 1, DEADLINE));
        settlement.attest(t, proof, 2_000, 2_000);
        // Anyone may trigger the refund; it goes to the buyer.
        vm.prank(seller);
        settlement.reclaim(t, proof);
        assertEq(settlement.freeBalance(buyer), 1_000_000);
        assertEq(settlement.freeBalance(seller), 0);
        assertEq(settlement.lockedBalance(buyer), 0);
    }

    function test_whatARoundLockedBeyondItsTradesIsReleasedAfterTheDeadline() public {
        fund(buyer, 1_000_000);
        Settlement.Trade memory t = trade(1, 1, 2_000, 200_000, 0); // 400,000 for the trade
        bytes32[] memory leaves = new bytes32[](1);
        leaves[0] = leaf(t);
        (bytes32 root, bytes32[] memory proof) = rootAndProof(leaves, 0);
        Settlement.BuyerLock[] memory locks = new Settlement.BuyerLock[](1);
        locks[0] = Settlement.BuyerLock(buyer, 900_000);
        vm.prank(operator);
        settlement.commitRound(Settlement.RoundParams(1, bytes32(0), root, DEADLINE, 0, 1), locks);
        vm.prank(validator1);
        settlement.attest(t, proof, 2_000, 2_000);
        assertEq(settlement.lockedBalance(buyer), 500_000);
        vm.expectRevert(abi.encodeWithSelector(Settlement.DeadlineNotPassed.selector, 1, DEADLINE));
        settlement.releaseExpired(1, buyer);
        vm.warp(DEADLINE + 1);
        vm.prank(seller);
        settlement.releaseExpired(1, buyer);
        assertEq(settlement.lockedBalance(buyer), 0);
        assertEq(settlement.freeBalance(buyer), 600_000);
        vm.expectRevert(Settlement.ZeroAmount.selector);
        settlement.releaseExpired(1, buyer);
    }

    function test_agreementIsAGroupWithinTheToleranceWhateverTheOrder() public {
        // Quorum 3, tolerance 10: 990, 1,000 and 1,010 span 20 Wh, so no three agree in
        // any order (the newest attestation is not the yardstick).
        uint64[3] memory values = [uint64(990), 1_000, 1_010];
        uint256[3][2] memory orders = [[uint256(0), 1, 2], [uint256(1), 0, 2]];
        address[3] memory validators = [validator1, validator2, validator3];
        for (uint64 o; o < 2; ++o) {
            fund(buyer, 1_000_000);
            Settlement.Trade memory t = trade(o + 1, 1, 1_000, 200_000, 0);
            bytes32[] memory proof = commitOne(t, DEADLINE, 10, 3);
            for (uint256 k; k < 3; ++k) {
                uint64 v = values[orders[o][k]];
                vm.prank(validators[k]);
                settlement.attest(t, proof, v, v);
            }
            assertEq(uint256(settlement.tradeState(leaf(t))), uint256(Settlement.TradeState.Open));
        }
        // Quorum 2: 990 then 1,010 disagree; 1,000 then forms a group with 990, paid at 990.
        fund(buyer, 1_000_000);
        Settlement.Trade memory u = trade(3, 1, 1_000, 200_000, 0);
        bytes32[] memory proofU = commitOne(u, DEADLINE, 10, 2);
        vm.prank(validator1);
        settlement.attest(u, proofU, 990, 990);
        vm.prank(validator2);
        settlement.attest(u, proofU, 1_010, 1_010);
        assertEq(uint256(settlement.tradeState(leaf(u))), uint256(Settlement.TradeState.Open));
        vm.prank(validator3);
        settlement.attest(u, proofU, 1_000, 1_000);
        assertEq(uint256(settlement.tradeState(leaf(u))), uint256(Settlement.TradeState.Settled));
        assertEq(energy.balanceOf(buyer, 7), 990);
    }

    function test_aPauseDoesNotTurnAPendingTradeIntoARefund() public {
        fund(buyer, 1_000_000);
        Settlement.Trade memory t = trade(1, 1, 2_000, 200_000, 0);
        bytes32[] memory proof = commitOne(t, DEADLINE, 0, 2);
        vm.prank(validator1);
        settlement.attest(t, proof, 2_000, 2_000);
        vm.prank(admin);
        settlement.pause();
        vm.warp(DEADLINE + 1);
        vm.prank(buyer);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        settlement.reclaim(t, proof);
        vm.startPrank(admin);
        settlement.extendDeadline(1, DEADLINE + 1 days);
        settlement.unpause();
        vm.stopPrank();
        vm.prank(validator2);
        settlement.attest(t, proof, 2_000, 2_000);
        assertEq(settlement.freeBalance(seller), 400_000);
        vm.prank(operator);
        vm.expectRevert();
        settlement.extendDeadline(1, DEADLINE + 2 days);
    }

    function test_aTradeOutsideTheRoundIsRefused() public {
        fund(buyer, 1_000_000);
        Settlement.Trade memory t = trade(1, 1, 2_000, 200_000, 0);
        bytes32[] memory proof = commitOne(t, DEADLINE, 0, 1);
        Settlement.Trade memory forged = trade(1, 1, 2_000, 900_000, 0);
        vm.prank(validator1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.InvalidProof.selector, 1, 1));
        settlement.attest(forged, proof, 2_000, 2_000);
    }

    function test_noTradePaysBeyondWhatWasLockedForItsBuyer() public {
        fund(buyer, 1_000_000);
        Settlement.Trade memory t = trade(1, 1, 2_000, 200_000, 0);
        bytes32[] memory leaves = new bytes32[](1);
        leaves[0] = leaf(t);
        (bytes32 root, bytes32[] memory proof) = rootAndProof(leaves, 0);
        Settlement.BuyerLock[] memory locks = new Settlement.BuyerLock[](1);
        locks[0] = Settlement.BuyerLock(buyer, 1_000); // the operator locks too little
        vm.prank(operator);
        settlement.commitRound(Settlement.RoundParams(1, bytes32(0), root, DEADLINE, 0, 1), locks);
        vm.prank(validator1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.LockExceeded.selector, 1, buyer, 400_000, 1_000));
        settlement.attest(t, proof, 2_000, 2_000);
    }

    function test_pauseStopsNewMoneyAndCommitmentsButNotWithdrawals() public {
        fund(buyer, 1_000_000);
        vm.prank(admin);
        settlement.pause();
        vm.prank(buyer);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        settlement.deposit(1);
        Settlement.BuyerLock[] memory locks = new Settlement.BuyerLock[](0);
        vm.prank(operator);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        settlement.commitRound(Settlement.RoundParams(1, bytes32(0), keccak256("r"), DEADLINE, 0, 1), locks);
        vm.prank(buyer);
        settlement.withdraw(1_000_000);
        assertEq(payment.balanceOf(buyer), 1_000_000);
    }

    function test_aRoundIdIsCommittedOnce() public {
        fund(buyer, 1_000_000);
        commitOne(trade(1, 1, 10, 1, 0), DEADLINE, 0, 1);
        Settlement.BuyerLock[] memory locks = new Settlement.BuyerLock[](0);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Settlement.RoundAlreadyCommitted.selector, 1));
        settlement.commitRound(Settlement.RoundParams(1, bytes32(0), keccak256("r"), DEADLINE, 0, 1), locks);
    }

    function test_aBatchAttestsManyTradesAndSkipsSettledOnes() public {
        fund(buyer, 10_000_000);
        Settlement.Trade[] memory trades = new Settlement.Trade[](3);
        bytes32[] memory leaves = new bytes32[](3);
        Settlement.BuyerLock[] memory locks = new Settlement.BuyerLock[](1);
        for (uint64 k; k < 3; ++k) {
            trades[k] = trade(1, k + 1, 1_000 * (k + 1), 200_000, 0);
            leaves[k] = leaf(trades[k]);
            locks[0].amount += settlement.lockAmount(trades[k]);
        }
        locks[0].buyer = buyer;
        bytes32[][] memory proofs = new bytes32[][](3);
        bytes32 root;
        for (uint256 k; k < 3; ++k) {
            (root, proofs[k]) = rootAndProof(leaves, k);
        }
        vm.prank(operator);
        settlement.commitRound(Settlement.RoundParams(1, bytes32(0), root, DEADLINE, 0, 2), locks);
        uint64[] memory wh = new uint64[](3);
        wh[0] = 1_000;
        wh[1] = 2_000;
        wh[2] = 3_000;
        vm.prank(validator1);
        settlement.attestBatch(trades, proofs, wh, wh);
        // Trade 1 reaches its quorum alone through validator 2; the batch must skip it.
        bytes32[] memory proof0 = proofs[0];
        vm.prank(validator2);
        settlement.attest(trades[0], proof0, 1_000, 1_000);
        Settlement.TradeState[] memory states = settlement.tradeStates(leaves);
        assertEq(uint256(states[0]), uint256(Settlement.TradeState.Settled));
        assertEq(uint256(states[1]), uint256(Settlement.TradeState.Open));
        assertEq(uint256(states[2]), uint256(Settlement.TradeState.Open));
        vm.prank(validator2);
        settlement.attestBatch(trades, proofs, wh, wh);
        // Resending a batch after a partial failure skips what was already attested.
        vm.prank(validator1);
        settlement.attestBatch(trades, proofs, wh, wh);
        for (uint256 k; k < 3; ++k) {
            assertEq(uint256(settlement.tradeState(leaves[k])), uint256(Settlement.TradeState.Settled));
        }
        assertEq(settlement.freeBalance(seller), 1_200_000);
        assertEq(energy.balanceOf(buyer, 7), 6_000);
        uint64[] memory short = new uint64[](2);
        vm.prank(validator3);
        vm.expectRevert(Settlement.LengthMismatch.selector);
        settlement.attestBatch(trades, proofs, short, wh);
    }

    /// Whatever the quantity, prices and delivery: seller + fee + refund == the lock.
    function testFuzz_settlementSplitsTheLockExactly(uint64 wh, uint64 price, uint64 fee, uint64 delivered) public {
        wh = uint64(bound(wh, 1, 1e9));
        price = uint64(bound(price, 0, 1e7));
        fee = uint64(bound(fee, 0, 1e6));
        Settlement.Trade memory t = trade(1, 1, wh, price, fee);
        uint256 lock = settlement.lockAmount(t);
        fund(buyer, lock + 1);
        bytes32[] memory proof = commitOne(t, DEADLINE, 0, 1);
        vm.prank(validator1);
        settlement.attest(t, proof, delivered, delivered);
        uint256 paid = settlement.freeBalance(seller);
        uint256 feePaid = settlement.freeBalance(fees);
        uint256 refund = settlement.freeBalance(buyer) - 1;
        assertEq(paid + feePaid + refund, lock, "conservation");
        uint64 billed = delivered < wh ? delivered : wh;
        assertEq(paid, uint256(billed) * price / 1000, "seller paid for min(quantity, verified)");
        assertEq(energy.balanceOf(buyer, 7), billed, "energy tokens");
        assertEq(payment.balanceOf(address(settlement)), lock + 1, "tokens held");
    }
}

/// A contract account with no ERC-1155 receiver functions.
contract NoTokenHooks {}
