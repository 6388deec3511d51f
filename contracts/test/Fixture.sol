// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "./Vm.sol";
import {PaymentToken} from "../src/PaymentToken.sol";
import {EnergyToken} from "../src/EnergyToken.sol";
import {Settlement} from "../src/Settlement.sol";

/// Deployed contracts, funded actors, and a Merkle tree builder with sorted-pair hashing
/// (the hashing OpenZeppelin's MerkleProof verifies).
abstract contract Fixture is TestBase {
    PaymentToken internal payment;
    EnergyToken internal energy;
    Settlement internal settlement;

    address internal admin = address(0xA11CE);
    address internal operator = address(0x0FE);
    address internal fees = address(0xFEE);
    address internal buyer = address(0xB0B);
    address internal seller = address(0x5E11);
    address internal validator1 = address(0x7A1);
    address internal validator2 = address(0x7A2);
    address internal validator3 = address(0x7A3);

    function deployAll() internal {
        payment = new PaymentToken(admin);
        energy = new EnergyToken(admin);
        settlement = new Settlement(admin, payment, energy, fees);
        vm.startPrank(admin);
        energy.grantRole(energy.DELIVERER_ROLE(), address(settlement));
        settlement.grantRole(settlement.OPERATOR_ROLE(), operator);
        settlement.grantRole(settlement.VALIDATOR_ROLE(), validator1);
        settlement.grantRole(settlement.VALIDATOR_ROLE(), validator2);
        settlement.grantRole(settlement.VALIDATOR_ROLE(), validator3);
        vm.stopPrank();
    }

    function fund(address account, uint256 amount) internal {
        vm.prank(admin);
        payment.mint(account, amount);
        vm.startPrank(account);
        payment.approve(address(settlement), amount);
        settlement.deposit(amount);
        vm.stopPrank();
    }

    function trade(uint64 roundId, uint64 tradeId, uint64 wh, uint64 price, uint64 fee)
        internal
        view
        returns (Settlement.Trade memory)
    {
        return Settlement.Trade(roundId, tradeId, buyer, seller, 7, wh, price, fee);
    }

    function leaf(Settlement.Trade memory t) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(t))));
    }

    function hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    /// Root of a tree over `leaves` (an odd node moves up unchanged) and the proof of `index`.
    function rootAndProof(bytes32[] memory leaves, uint256 index)
        internal
        pure
        returns (bytes32 root, bytes32[] memory proof)
    {
        bytes32[] memory level = leaves;
        bytes32[] memory path = new bytes32[](64);
        uint256 depth;
        while (level.length > 1) {
            uint256 sibling = index ^ 1;
            if (sibling < level.length) path[depth++] = level[sibling];
            bytes32[] memory next = new bytes32[]((level.length + 1) / 2);
            for (uint256 i; i < level.length; i += 2) {
                next[i / 2] = i + 1 < level.length ? hashPair(level[i], level[i + 1]) : level[i];
            }
            level = next;
            index /= 2;
        }
        proof = new bytes32[](depth);
        for (uint256 i; i < depth; ++i) {
            proof[i] = path[i];
        }
        root = level[0];
    }

    function commitOne(Settlement.Trade memory t, uint64 deadline, uint64 toleranceWh, uint8 quorum)
        internal
        returns (bytes32[] memory proof)
    {
        bytes32[] memory leaves = new bytes32[](2);
        leaves[0] = leaf(t);
        leaves[1] = keccak256("another trade");
        bytes32 root;
        (root, proof) = rootAndProof(leaves, 0);
        Settlement.BuyerLock[] memory locks = new Settlement.BuyerLock[](1);
        locks[0] = Settlement.BuyerLock(t.buyer, settlement.lockAmount(t));
        vm.prank(operator);
        settlement.commitRound(
            Settlement.RoundParams(t.roundId, keccak256("inputs"), root, deadline, toleranceWh, quorum), locks
        );
    }
}
