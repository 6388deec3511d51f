// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm} from "./Vm.sol";
import {SettlementFixture} from "./SettlementFixture.sol";
import {Settlement} from "../src/Settlement.sol";
import {EnergyToken} from "../src/EnergyToken.sol";

/// The ordinary life of a trade: deposit, signed orders, a round in chunks, validators'
/// signed votes submitted by anyone, settlement, energy tokens, withdrawal.
contract SettlementTest is SettlementFixture {
    /// Property: a quorum of signed votes, submitted by an account with no role, settles a
    /// trade: seller paid price x Wh, fee recipient fee x Wh, the rest of the lock back to
    /// the buyer, energy tokens minted straight to the buyer (Delivered names the seller).
    function test_SettlementPaysSellerFeeAndRefundsBuyer() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        uint256 lock = lockOf(t);
        assertEq(lock, uint256(QUANTITY) * (PRICE + FEE) / 1000, "lock");
        assertEq(lockedOf(buyer), lock, "locked");
        uint256 toSeller = uint256(9000) * PRICE / 1000;
        uint256 fee = uint256(9000) * FEE / 1000;
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.TradeSettled(idOf(t), 9000, toSeller, fee, lock - toSeller - fee);
        vm.expectEmit(true, true, true, true, address(energy));
        emit EnergyToken.Delivered(seller, buyer, SLOT_START, 9000);
        voteBy(3, t, 9000);
        assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Settled), "settled");
        assertEq(freeOf(seller), toSeller, "seller");
        assertEq(freeOf(fees), fee, "fees");
        assertEq(freeOf(buyer), BUYER_FUNDS - toSeller - fee, "buyer");
        assertEq(lockedOf(buyer), 0, "unlocked");
        assertEq(energy.balanceOf(buyer, SLOT_START), 9000, "buyer holds the energy");
        assertEq(energy.balanceOf(seller, SLOT_START), 0, "never held by the seller");
        assertEq(settlement.totalPaidWh(), 9000, "total paid Wh");

        vm.prank(seller);
        settlement.withdraw(toSeller);
        assertEq(payment.balanceOf(seller), toSeller, "seller withdrew");
    }

    /// Property: zero delivery settles with nothing paid: whole lock back, no energy (and no
    /// Delivered event).
    function test_ZeroDeliveryRefundsTheLock() public {
        Settlement.Trade memory t = sealedDefaultTrade(1);
        vm.recordLogs();
        voteBy(3, t, 0);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        for (uint256 i; i < logs.length; ++i) {
            assertTrue(logs[i].emitter != address(energy), "no energy event");
        }
        assertEq(uint256(stateOf(t)), uint256(Settlement.TradeState.Settled), "settled");
        assertEq(freeOf(buyer), BUYER_FUNDS, "all back");
        assertEq(freeOf(seller), 0, "nothing paid");
        assertEq(energy.balanceOf(buyer, SLOT_START), 0, "no energy");
    }

    /// Property: a round filled in several chunks, one order partly filled by trades in
    /// different chunks; the round counts its trades and tracks the earliest expiry.
    function test_RoundInChunks() public {
        Settlement.Order memory buy = buyOrder(buyer, QUANTITY);
        Settlement.Order memory sell1 = sellOrder(seller, 4000);
        Settlement.Order memory sell2 = sellOrder(seller2, 6000);
        sell2.expiry = uint64(block.timestamp) + 3 days;
        openRound(7);
        addTrade(7, tradeInput(buy, sell1, 4000, PRICE, FEE));
        addTrade(7, tradeInput(buy, sell2, 6000, 260_000, 20_000));
        addTrades(7, new Settlement.TradeInput[](0));
        seal(7);
        Settlement.Round memory round = settlement.rounds(7);
        assertEq(round.trades, 2, "two trades");
        assertEq(round.minExpiry, sell2.expiry, "earliest expiry");
        assertEq(uint256(round.status), uint256(Settlement.RoundStatus.Sealed), "sealed");
        Settlement.OrderUse memory use = settlement.orderUse(buyer, buy.nonce);
        assertEq(use.filledWh, QUANTITY, "buy order filled");
        assertEq(bytes32(use.orderHash), bytes32(bytes24(settlement.orderHash(buy))), "nonce bound to the order");
        assertEq(filledOf(sell2), 6000, "second sell order filled");
        assertEq(
            lockedOf(buyer),
            settlement.lockAmount(4000, PRICE, FEE) + settlement.lockAmount(6000, 260_000, 20_000),
            "two locks"
        );
        bytes32[] memory ids = new bytes32[](3);
        ids[0] = settlement.tradeIdOf(7, settlement.orderHash(buy), settlement.orderHash(sell1));
        ids[1] = settlement.tradeIdOf(7, settlement.orderHash(buy), settlement.orderHash(sell2));
        ids[2] = bytes32(uint256(1));
        Settlement.TradeState[] memory states = settlement.tradeStates(ids);
        assertEq(uint256(states[0]), uint256(Settlement.TradeState.Open), "first open");
        assertEq(uint256(states[1]), uint256(Settlement.TradeState.Open), "second open");
        assertEq(uint256(states[2]), uint256(Settlement.TradeState.None), "unknown");
    }

    /// Property: depositFor credits many accounts from one funder; withdraw returns tokens.
    function test_DepositForAndWithdraw() public {
        address funder = address(0xF00D);
        vm.prank(admin);
        payment.mint(funder, 300);
        address[] memory accounts = new address[](2);
        (accounts[0], accounts[1]) = (buyer2, seller2);
        uint256[] memory amounts = new uint256[](2);
        (amounts[0], amounts[1]) = (100, 200);
        vm.startPrank(funder);
        payment.approve(address(settlement), 300);
        settlement.depositFor(accounts, amounts);
        vm.stopPrank();
        assertEq(freeOf(buyer2), 100, "buyer2 credited");
        assertEq(freeOf(seller2), 200, "seller2 credited");
        assertEq(freeOf(funder), 0, "the money belongs to the accounts");
        vm.prank(seller2);
        settlement.withdraw(200);
        assertEq(payment.balanceOf(seller2), 200, "withdrawn");

        vm.expectRevert(Settlement.LengthMismatch.selector);
        settlement.depositFor(accounts, new uint256[](1));
        vm.expectRevert(Settlement.ZeroAmount.selector);
        settlement.deposit(0);
        vm.expectRevert(Settlement.ZeroAmount.selector);
        settlement.withdraw(0);
    }

    /// Property: cancelOrder records the cancellation and emits it.
    function test_CancelOrderEmits() public {
        vm.expectEmit(true, true, true, true, address(settlement));
        emit Settlement.OrderNonceCancelled(buyer, 42);
        vm.prank(buyer);
        settlement.cancelOrder(42);
        assertTrue(settlement.nonceCancelled(buyer, 42), "cancelled");
    }

    /// Property: the digest tests sign is the EIP-712 digest of the order under the
    /// contract's domain.
    function test_OrderHashIsEip712Digest() public {
        Settlement.Order memory o = buyOrder(buyer, QUANTITY);
        bytes32 structHash = keccak256(
            abi.encode(
                settlement.ORDER_TYPEHASH(),
                o.participant,
                o.isBuy,
                o.slotStart,
                o.slotEnd,
                o.quantityWh,
                o.limitMicroEurPerKwh,
                o.maxFeeMicroEurPerKwh,
                o.expiry,
                o.nonce
            )
        );
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("gridmatch Settlement"),
                keccak256("2"),
                block.chainid,
                address(settlement)
            )
        );
        assertEq(settlement.domainSeparator(), domain, "domain");
        assertEq(settlement.orderHash(o), keccak256(abi.encodePacked("\x19\x01", domain, structHash)), "typed digest");
    }

    /// Property: the digest validators sign is the EIP-712 digest of
    /// Attestation(bytes32 tradeId,uint64 deliveredWh,uint32 epoch) under the contract's domain.
    function test_AttestationHashIsEip712Digest() public view {
        bytes32 tradeId = keccak256("some trade");
        bytes32 typeHash = keccak256("Attestation(bytes32 tradeId,uint64 deliveredWh,uint32 epoch)");
        assertEq(settlement.ATTESTATION_TYPEHASH(), typeHash, "type hash");
        bytes32 structHash = keccak256(abi.encode(typeHash, tradeId, uint64(9000), uint32(3)));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", settlement.domainSeparator(), structHash));
        assertEq(settlement.attestationHash(tradeId, 9000, 3), digest, "typed digest");
        assertTrue(settlement.attestationHash(tradeId, 9001, 3) != digest, "the value is signed");
        assertTrue(settlement.attestationHash(tradeId, 9000, 4) != digest, "the epoch is signed");
    }

    /// Property: anyone submits the votes, in any order: the same trade settles at the same
    /// median whoever sends the transaction and however the signed votes are arranged.
    function test_AnyoneSubmitsVotesInAnyOrder() public {
        registerValidators(4);
        Settlement.Trade memory t = sealedDefaultTrade(1);
        Settlement.SignedVote[] memory votes = votesOf(t, whs4(9950, 9900, 10_000, 9850));
        Settlement.SignedVote[] memory reversed = new Settlement.SignedVote[](4);
        for (uint256 i; i < 4; ++i) {
            reversed[i] = votes[3 - i];
        }
        vm.prank(seller); // an interested party may submit, as may anyone
        settlement.settleTrade(t, reversed);
        assertEq(settlement.totalPaidWh(), 9900, "lower median of 9850, 9900, 9950, 10 000");
        assertEq(energy.balanceOf(buyer, SLOT_START), 9900, "energy to the buyer");
    }

    /// Property: settleBatch settles many trades of several rounds with their own vote sets
    /// in one call.
    function test_SettleBatchSettlesManyTrades() public {
        fund(buyer2, BUYER_FUNDS);
        Settlement.Trade memory a = sealedDefaultTrade(1);
        Settlement.Trade[] memory r2 = runRound(2, two(defaultInput(buyer2, seller), defaultInput(buyer, seller2)));
        Settlement.Trade[] memory batch = new Settlement.Trade[](3);
        (batch[0], batch[1], batch[2]) = (a, r2[0], r2[1]);
        Settlement.SignedVote[][] memory votes = new Settlement.SignedVote[][](3);
        (votes[0], votes[1], votes[2]) = (votesBy(3, a, 1000), votesBy(3, r2[0], 2000), votesBy(3, r2[1], 3000));
        vm.prank(relayer);
        settlement.settleBatch(batch, votes);
        for (uint256 i; i < 3; ++i) {
            assertEq(uint256(stateOf(batch[i])), uint256(Settlement.TradeState.Settled), "settled");
        }
        assertEq(settlement.totalPaidWh(), 6000, "1000 + 2000 + 3000 Wh");
        assertEq(energy.balanceOf(buyer, SLOT_START), 4000, "buyer's energy");
        assertEq(energy.balanceOf(buyer2, SLOT_START), 2000, "buyer2's energy");
        assertEq(freeOf(seller), uint256(3000) * PRICE / 1000, "seller paid for its trades");
        assertEq(freeOf(seller2), uint256(3000) * PRICE / 1000, "seller2 paid for its trade");
    }
}
