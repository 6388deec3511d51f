// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "./Vm.sol";
import {Fixture} from "./Fixture.sol";
import {PaymentToken} from "../src/PaymentToken.sol";
import {Settlement} from "../src/Settlement.sol";

/// Random sequences of deposits, withdrawals, one-trade rounds, attestations, time and
/// reclaims, each kept valid so that a revert is a bug (fail_on_revert).
contract SettlementHandler is TestBase {
    Settlement internal immutable settlement;
    PaymentToken internal immutable payment;
    address internal immutable admin;
    address internal immutable operator;
    address[] public actors;
    address[3] internal validators;

    Settlement.Trade[] internal trades;
    mapping(uint256 index => bytes32[]) internal proofs;
    mapping(uint256 index => mapping(address validator => bool)) internal attested;
    uint64 internal nextRound = 1;
    /// What rounds locked minus what settled, reclaimed and released trades gave back.
    uint256 public openLocked;
    mapping(uint64 roundId => bool) internal released;

    constructor(Settlement settlement_, PaymentToken payment_, address admin_, address operator_, address fees) {
        settlement = settlement_;
        payment = payment_;
        admin = admin_;
        operator = operator_;
        actors.push(address(0xB1));
        actors.push(address(0xB2));
        actors.push(address(0x51));
        actors.push(address(0x52));
        actors.push(fees);
        validators = [address(0x7A1), address(0x7A2), address(0x7A3)];
    }

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function deposit(uint256 who, uint256 amount) external {
        address account = actors[who % 4];
        amount = bound(amount, 1, 1e12);
        vm.prank(admin);
        payment.mint(account, amount);
        vm.startPrank(account);
        payment.approve(address(settlement), amount);
        settlement.deposit(amount);
        vm.stopPrank();
    }

    /// A funder tops up both buyers at once.
    function depositFor(uint256 first, uint256 second) external {
        address[] memory accounts = new address[](2);
        uint256[] memory amounts = new uint256[](2);
        (accounts[0], accounts[1]) = (actors[0], actors[1]);
        (amounts[0], amounts[1]) = (bound(first, 1, 1e12), bound(second, 1, 1e12));
        address funder = address(0xF0);
        vm.prank(admin);
        payment.mint(funder, amounts[0] + amounts[1]);
        vm.startPrank(funder);
        payment.approve(address(settlement), amounts[0] + amounts[1]);
        settlement.depositFor(accounts, amounts);
        vm.stopPrank();
    }

    function withdraw(uint256 who, uint256 amount) external {
        address account = actors[who % actors.length];
        uint256 free = settlement.freeBalance(account);
        if (free == 0) return;
        amount = bound(amount, 1, free);
        vm.prank(account);
        settlement.withdraw(amount);
    }

    function commit(
        uint256 buyerSeed,
        uint256 sellerSeed,
        uint64 wh,
        uint64 price,
        uint64 fee,
        uint8 quorum,
        uint256 overLock
    ) external {
        Settlement.Trade memory t = Settlement.Trade(
            nextRound,
            1,
            actors[buyerSeed % 2],
            actors[2 + sellerSeed % 2],
            uint64(block.timestamp % 24),
            uint64(bound(wh, 1, 1e7)),
            uint64(bound(price, 0, 1e6)),
            uint64(bound(fee, 0, 1e5))
        );
        // Sometimes the operator locks more than the trade needs: released after the deadline.
        uint256 lock = settlement.lockAmount(t) + bound(overLock, 0, 1_000);
        if (settlement.freeBalance(t.buyer) < lock) return;
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(t))));
        bytes32 other = keccak256(abi.encode(nextRound));
        bytes32 root = leaf < other ? keccak256(abi.encode(leaf, other)) : keccak256(abi.encode(other, leaf));
        Settlement.BuyerLock[] memory locks = new Settlement.BuyerLock[](1);
        locks[0] = Settlement.BuyerLock(t.buyer, lock);
        vm.prank(operator);
        settlement.commitRound(
            Settlement.RoundParams(
                nextRound, bytes32(0), root, uint64(block.timestamp + 1 days), 5, uint8(bound(quorum, 1, 3))
            ),
            locks
        );
        trades.push(t);
        proofs[trades.length - 1].push(other);
        openLocked += lock;
        ++nextRound;
    }

    function attest(uint256 which, uint256 validatorSeed, uint64 sent, uint64 received) external {
        if (trades.length == 0) return;
        uint256 index = which % trades.length;
        Settlement.Trade memory t = trades[index];
        address validator = validators[validatorSeed % 3];
        bytes32 leaf = settlement.leafOf(t);
        if (settlement.tradeState(leaf) != Settlement.TradeState.Open) return;
        if (block.timestamp > settlement.rounds(t.roundId).deadline || attested[index][validator]) return;
        attested[index][validator] = true;
        vm.prank(validator);
        settlement.attest(t, proofs[index], uint64(bound(sent, 0, 2e7)), uint64(bound(received, 0, 2e7)));
        if (settlement.tradeState(leaf) == Settlement.TradeState.Settled) openLocked -= settlement.lockAmount(t);
    }

    function passTime(uint256 seconds_) external {
        vm.warp(block.timestamp + bound(seconds_, 1, 2 days));
    }

    function reclaim(uint256 which) external {
        if (trades.length == 0) return;
        uint256 index = which % trades.length;
        Settlement.Trade memory t = trades[index];
        if (settlement.tradeState(settlement.leafOf(t)) != Settlement.TradeState.Open) return;
        if (block.timestamp <= settlement.rounds(t.roundId).deadline || released[t.roundId]) return;
        settlement.reclaim(t, proofs[index]);
        openLocked -= settlement.lockAmount(t);
    }

    function releaseExpired(uint256 which) external {
        if (trades.length == 0) return;
        Settlement.Trade memory t = trades[which % trades.length];
        uint256 left = settlement.roundLock(t.roundId, t.buyer);
        if (left == 0 || block.timestamp <= settlement.rounds(t.roundId).deadline) return;
        settlement.releaseExpired(t.roundId, t.buyer);
        released[t.roundId] = true;
        openLocked -= left;
    }
}

contract SettlementInvariantTest is Fixture {
    SettlementHandler internal handler;

    function setUp() public {
        vm.warp(1_000);
        deployAll();
        handler = new SettlementHandler(settlement, payment, admin, operator, fees);
        vm.startPrank(admin);
        payment.grantRole(payment.MINTER_ROLE(), address(handler));
        settlement.grantRole(settlement.VALIDATOR_ROLE(), address(0x7A1));
        vm.stopPrank();
        targetContract(address(handler));
    }

    /// Tokens held by the contract == free balances + locked amounts, always.
    function invariant_tokensHeldEqualFreePlusLocked() public view {
        uint256 sum;
        for (uint256 i; i < handler.actorCount(); ++i) {
            address account = handler.actors(i);
            sum += settlement.freeBalance(account) + settlement.lockedBalance(account);
        }
        assertEq(payment.balanceOf(address(settlement)), sum, "conservation");
    }

    /// What is locked is exactly what rounds locked and have not yet paid out or given back.
    function invariant_lockedEqualsOpenTrades() public view {
        uint256 locked;
        for (uint256 i; i < handler.actorCount(); ++i) {
            locked += settlement.lockedBalance(handler.actors(i));
        }
        assertEq(locked, handler.openLocked(), "locked");
    }
}
