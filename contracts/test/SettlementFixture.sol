// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "./Vm.sol";
import {PaymentToken} from "../src/PaymentToken.sol";
import {EnergyToken} from "../src/EnergyToken.sol";
import {Settlement} from "../src/Settlement.sol";
import {ValidatorRegistry} from "../src/ValidatorRegistry.sol";

/// An independent model of the contract's arithmetic and agreement rule, written from the
/// specification (not from the contract's code) so that tests compare two implementations.
library Reference {
    /// @notice quantity x (price + fee) / 1000, rounded up.
    function lockAmount(uint256 quantityWh, uint256 price, uint256 fee) internal pure returns (uint256) {
        uint256 product = quantityWh * (price + fee);
        return product / 1000 + (product % 1000 == 0 ? 0 : 1);
    }

    /// @notice Votes agree within max(1, quantity x perMille / 1000) Wh.
    function toleranceWh(uint256 quantityWh, uint256 perMille) internal pure returns (uint256) {
        uint256 t = quantityWh * perMille / 1000;
        return t == 0 ? 1 : t;
    }

    /// @notice The largest set of votes within `tol` of each other (brute force over every lower
    ///         end; of equally large sets the one with the lowest values) and its lower median.
    function agreement(uint64[] memory votes, uint256 tol) internal pure returns (uint256 size, uint64 median) {
        uint256 n = votes.length;
        uint64 low;
        for (uint256 i; i < n; ++i) {
            uint256 count;
            for (uint256 j; j < n; ++j) {
                if (votes[j] >= votes[i] && uint256(votes[j]) - votes[i] <= tol) ++count;
            }
            if (count > size || (count == size && votes[i] < low)) (size, low) = (count, votes[i]);
        }
        if (size == 0) return (0, 0);
        // The k-th smallest member of the group [low, low + tol], k = (size - 1) / 2.
        uint256 k = (size - 1) / 2;
        for (uint256 i; i < n; ++i) {
            uint64 v = votes[i];
            if (v < low || uint256(v) - low > tol) continue;
            uint256 below;
            uint256 equal;
            for (uint256 j; j < n; ++j) {
                uint64 w = votes[j];
                if (w < low || uint256(w) - low > tol) continue;
                if (w < v) ++below;
                else if (w == v) ++equal;
            }
            if (below <= k && k < below + equal) return (size, v);
        }
    }

    /// @notice Agreeing validators needed out of `n`: the least number strictly above 2n/3.
    function quorum(uint256 n) internal pure returns (uint256) {
        return n == 0 ? type(uint256).max : n * 2 / 3 + 1;
    }

    /// @notice The smaller of `a` and `b`.
    function min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }
}

/// Deployed contracts, actors made from private keys, and helpers to sign orders, build
/// trade inputs and records, run rounds, and sign (EIP-712) and submit validators' votes.
abstract contract SettlementFixture is TestBase {
    uint64 internal constant T0 = 1_750_000_000;
    /// The default slot was delivered before T0 (settled from T0 on, its slot ended:
    /// the contract counts votes only after a slot's end) and ends more than the voting
    /// window before any deadline the tests choose; the hours after it are free for trades
    /// of later slots (up to SLOT_START + 4 hours, all ended by T0).
    uint64 internal constant SLOT_START = T0 - 6 hours;
    uint64 internal constant SLOT_END = SLOT_START + 15 minutes;
    /// Default round deadline: this long after the round opens.
    uint64 internal constant ROUND_DURATION = 1 days;
    /// Default order expiry: this long after the order is made.
    uint64 internal constant ORDER_LIFETIME = 10 days;
    uint64 internal constant TOLERANCE_PER_MILLE = 20;

    uint64 internal constant QUANTITY = 10_000; // Wh
    uint64 internal constant PRICE = 250_000; // micro-EUR per kWh
    uint64 internal constant FEE = 30_000;
    uint64 internal constant BUY_LIMIT = 300_000;
    uint64 internal constant MAX_FEE = 40_000;
    uint64 internal constant SELL_LIMIT = 200_000;
    uint256 internal constant BUYER_FUNDS = 1_000_000_000; // 1000 EUR

    uint256 internal constant BUYER_KEY = 0xB0B;
    uint256 internal constant BUYER2_KEY = 0xB0B2;
    uint256 internal constant SELLER_KEY = 0x5E11;
    uint256 internal constant SELLER2_KEY = 0x5E112;
    uint256 internal constant MALLORY_KEY = 0xBAD;
    uint256 internal constant VALIDATOR_KEY_BASE = 0x7A1000;

    PaymentToken internal payment;
    ValidatorRegistry internal registry;
    Settlement internal settlement;
    EnergyToken internal energy;

    address internal admin = address(0xA11CE);
    address internal operator = address(0x0FE);
    address internal fees = address(0xFEE);
    /// Submits signed votes: holds no role and no key of a validator.
    address internal relayer = address(0x5E7);
    address internal buyer;
    address internal buyer2;
    address internal seller;
    address internal seller2;
    address internal mallory;

    mapping(address account => uint256 key) internal keyOf;
    mapping(address participant => uint64 nonce) internal nextNonce;

    /// @notice Time T0; buyer, sellers, mallory; a fresh deployment with validators 0..2; the buyer funded.
    function setUp() public virtual {
        vm.warp(T0);
        buyer = makeActor(BUYER_KEY, "buyer");
        buyer2 = makeActor(BUYER2_KEY, "buyer2");
        seller = makeActor(SELLER_KEY, "seller");
        seller2 = makeActor(SELLER2_KEY, "seller2");
        mallory = makeActor(MALLORY_KEY, "mallory");
        deploy(TOLERANCE_PER_MILLE);
        registerValidators(3);
        fund(buyer, BUYER_FUNDS);
    }

    // ------------------------------------------------------------ deployment, actors

    /// @notice The account of private key `key`, remembered (keyOf) and labelled `name`.
    function makeActor(uint256 key, string memory name) internal returns (address account) {
        account = vm.addr(key);
        keyOf[account] = key;
        vm.label(account, name);
    }

    /// @notice Fresh payment token, registry and settlement (with its energy token).
    function deploy(uint64 tolerancePerMille) internal {
        payment = new PaymentToken(admin);
        registry = new ValidatorRegistry(admin);
        settlement = new Settlement(admin, payment, registry, fees, tolerancePerMille);
        energy = settlement.energyToken();
        vm.startPrank(admin);
        settlement.grantRole(settlement.OPERATOR_ROLE(), operator);
        vm.stopPrank();
    }

    /// @notice The account of validator `i` (key VALIDATOR_KEY_BASE + i).
    function validatorAt(uint256 i) internal pure returns (address) {
        return vm.addr(VALIDATOR_KEY_BASE + i);
    }

    /// @notice Registers validators 0..n-1 (those not registered yet).
    function registerValidators(uint256 n) internal {
        vm.startPrank(admin);
        for (uint256 i; i < n; ++i) {
            if (registry.epochOf(validatorAt(i)) == 0) registry.register(validatorAt(i));
        }
        vm.stopPrank();
    }

    /// @notice The registrar revokes validator `v`.
    function revokeValidator(address v) internal {
        vm.prank(admin);
        registry.revoke(v);
    }

    /// @notice Mint `amount` to `account` and deposit it as free balance.
    function fund(address account, uint256 amount) internal {
        vm.prank(admin);
        payment.mint(account, amount);
        vm.startPrank(account);
        payment.approve(address(settlement), amount);
        settlement.deposit(amount);
        vm.stopPrank();
    }

    /// @notice `account`'s free escrow balance.
    function freeOf(address account) internal view returns (uint256) {
        (uint256[] memory free,) = settlement.balancesOf(one(account));
        return free[0];
    }

    /// @notice `account`'s escrow locked by open trades.
    function lockedOf(address account) internal view returns (uint256) {
        (, uint256[] memory locked) = settlement.balancesOf(one(account));
        return locked[0];
    }

    // ------------------------------------------------------------ orders and trades

    /// @notice An order for the default slot, expiring ORDER_LIFETIME from now, under the
    ///         participant's next nonce.
    function makeOrder(address participant, bool isBuy, uint64 quantityWh, uint64 limit, uint64 maxFee)
        internal
        returns (Settlement.Order memory order)
    {
        order = Settlement.Order({
            participant: participant,
            isBuy: isBuy,
            slotStart: SLOT_START,
            slotEnd: SLOT_END,
            quantityWh: quantityWh,
            limitMicroEurPerKwh: limit,
            maxFeeMicroEurPerKwh: maxFee,
            expiry: uint64(block.timestamp) + ORDER_LIFETIME,
            nonce: nextNonce[participant]++
        });
    }

    /// @notice A default buy order (BUY_LIMIT, MAX_FEE) of `quantityWh`.
    function buyOrder(address participant, uint64 quantityWh) internal returns (Settlement.Order memory) {
        return makeOrder(participant, true, quantityWh, BUY_LIMIT, MAX_FEE);
    }

    /// @notice A default sell order (SELL_LIMIT) of `quantityWh`.
    function sellOrder(address participant, uint64 quantityWh) internal returns (Settlement.Order memory) {
        return makeOrder(participant, false, quantityWh, SELL_LIMIT, 0);
    }

    /// @notice 65-byte r || s || v signature of the order's EIP-712 digest.
    function signOrder(uint256 key, Settlement.Order memory order) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, settlement.orderHash(order));
        return abi.encodePacked(r, s, v);
    }

    /// @notice Both orders signed by their participants.
    function tradeInput(
        Settlement.Order memory buy,
        Settlement.Order memory sell,
        uint64 quantityWh,
        uint64 price,
        uint64 fee
    ) internal view returns (Settlement.TradeInput memory) {
        return Settlement.TradeInput({
            buy: buy,
            buySignature: signOrder(keyOf[buy.participant], buy),
            sell: sell,
            sellSignature: signOrder(keyOf[sell.participant], sell),
            quantityWh: quantityWh,
            priceMicroEurPerKwh: price,
            feeMicroEurPerKwh: fee
        });
    }

    /// @notice A fresh default trade: QUANTITY Wh at PRICE + FEE between fresh orders.
    function defaultInput(address buyerAccount, address sellerAccount) internal returns (Settlement.TradeInput memory) {
        return tradeInput(buyOrder(buyerAccount, QUANTITY), sellOrder(sellerAccount, QUANTITY), QUANTITY, PRICE, FEE);
    }

    /// @notice The record the contract stores for `input` accepted into round `roundId`.
    function recordOf(uint64 roundId, Settlement.TradeInput memory input)
        internal
        view
        returns (Settlement.Trade memory)
    {
        return Settlement.Trade({
            roundId: roundId,
            buyOrder: settlement.orderHash(input.buy),
            sellOrder: settlement.orderHash(input.sell),
            buyer: input.buy.participant,
            seller: input.sell.participant,
            slotStart: input.buy.slotStart,
            slotEnd: input.buy.slotEnd,
            quantityWh: input.quantityWh,
            priceMicroEurPerKwh: input.priceMicroEurPerKwh,
            feeMicroEurPerKwh: input.feeMicroEurPerKwh
        });
    }

    /// @notice A copy (memory structs alias on assignment).
    function copyOf(Settlement.Trade memory t) internal pure returns (Settlement.Trade memory) {
        return abi.decode(abi.encode(t), (Settlement.Trade));
    }

    /// @notice Trade `t`'s id.
    function idOf(Settlement.Trade memory t) internal view returns (bytes32) {
        return settlement.tradeIdOf(t.roundId, t.buyOrder, t.sellOrder);
    }

    /// @notice The id `input` gets in round `roundId`.
    function idOf(uint64 roundId, Settlement.TradeInput memory input) internal view returns (bytes32) {
        return settlement.tradeIdOf(roundId, settlement.orderHash(input.buy), settlement.orderHash(input.sell));
    }

    /// @notice What trade `t` locks from its buyer (the contract's lockAmount).
    function lockOf(Settlement.Trade memory t) internal view returns (uint256) {
        return settlement.lockAmount(t.quantityWh, t.priceMicroEurPerKwh, t.feeMicroEurPerKwh);
    }

    /// @notice Trade `t`'s state in the contract.
    function stateOf(Settlement.Trade memory t) internal view returns (Settlement.TradeState) {
        return settlement.tradeState(idOf(t));
    }

    // ------------------------------------------------------------ rounds

    /// @notice The operator opens round `roundId` with the default deadline (ROUND_DURATION).
    function openRound(uint64 roundId) internal {
        openRound(roundId, uint64(block.timestamp) + ROUND_DURATION);
    }

    /// @notice The operator opens round `roundId` with `deadline`.
    function openRound(uint64 roundId, uint64 deadline) internal {
        vm.prank(operator);
        settlement.openRound(roundId, keccak256(abi.encode("inputs", roundId)), deadline);
    }

    /// @notice The operator adds `inputs` to round `roundId` as one chunk.
    function addTrades(uint64 roundId, Settlement.TradeInput[] memory inputs) internal {
        vm.prank(operator);
        settlement.addTrades(roundId, inputs);
    }

    /// @notice The operator adds one trade to round `roundId`.
    function addTrade(uint64 roundId, Settlement.TradeInput memory input) internal {
        addTrades(roundId, one(input));
    }

    /// @notice The operator seals round `roundId`.
    function seal(uint64 roundId) internal {
        vm.prank(operator);
        settlement.sealRound(roundId);
    }

    /// @notice Open, fill in one chunk and seal round `roundId`; returns the records.
    function runRound(uint64 roundId, Settlement.TradeInput[] memory inputs)
        internal
        returns (Settlement.Trade[] memory records)
    {
        openRound(roundId);
        addTrades(roundId, inputs);
        seal(roundId);
        records = new Settlement.Trade[](inputs.length);
        for (uint256 i; i < inputs.length; ++i) {
            records[i] = recordOf(roundId, inputs[i]);
        }
    }

    /// @notice A sealed round holding one fresh default trade from buyer to seller.
    function sealedDefaultTrade(uint64 roundId) internal returns (Settlement.Trade memory) {
        return runRound(roundId, one(defaultInput(buyer, seller)))[0];
    }

    // ------------------------------------------------------------ votes

    /// @notice The private key of validator `i` (validators are numbered from 0).
    function validatorKey(uint256 i) internal pure returns (uint256) {
        return VALIDATOR_KEY_BASE + i;
    }

    /// @notice 65-byte r || s || v signature by `key` of the EIP-712 attestation that trade
    ///         `tradeId` delivered `wh`, under `target`'s domain.
    function signVoteFor(Settlement target, uint256 key, bytes32 tradeId, uint64 wh)
        internal
        view
        returns (bytes memory)
    {
        uint32 epoch = target.validators().epochOf(vm.addr(key));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, target.attestationHash(tradeId, wh, epoch));
        return abi.encodePacked(r, s, v);
    }

    /// @notice {signVoteFor} under this test's settlement.
    function signVote(uint256 key, bytes32 tradeId, uint64 wh) internal view returns (bytes memory) {
        return signVoteFor(settlement, key, tradeId, wh);
    }

    /// @notice The vote of validator `i` that trade `t` delivered `wh`, signed by it.
    function signedVote(uint256 i, Settlement.Trade memory t, uint64 wh)
        internal
        view
        returns (Settlement.SignedVote memory)
    {
        address v = validatorAt(i);
        return Settlement.SignedVote(v, registry.epochOf(v), wh, signVote(validatorKey(i), idOf(t), wh));
    }

    /// @notice The vote of the account with private key `key` (any account, not only a
    ///         validator) that trade `t` delivered `wh`, signed by that key.
    function signedVoteByKey(uint256 key, Settlement.Trade memory t, uint64 wh)
        internal
        view
        returns (Settlement.SignedVote memory)
    {
        address a = vm.addr(key);
        return Settlement.SignedVote(a, registry.epochOf(a), wh, signVote(key, idOf(t), wh));
    }

    /// @notice Signed votes of validators 0..count-1, each that trade `t` delivered `wh`.
    function votesBy(uint256 count, Settlement.Trade memory t, uint64 wh)
        internal
        view
        returns (Settlement.SignedVote[] memory votes)
    {
        votes = new Settlement.SignedVote[](count);
        for (uint256 i; i < count; ++i) {
            votes[i] = signedVote(i, t, wh);
        }
    }

    /// @notice Signed votes of validators 0..whs.length-1, validator i voting whs[i].
    function votesOf(Settlement.Trade memory t, uint64[] memory whs)
        internal
        view
        returns (Settlement.SignedVote[] memory votes)
    {
        votes = new Settlement.SignedVote[](whs.length);
        for (uint256 i; i < whs.length; ++i) {
            votes[i] = signedVote(i, t, whs[i]);
        }
    }

    /// @notice Submits `votes` for trade `t` with settleTrade, from the relayer (anyone may
    ///         submit signed votes: the relayer holds no role).
    function settle(Settlement.Trade memory t, Settlement.SignedVote[] memory votes) internal {
        vm.prank(relayer);
        settlement.settleTrade(t, votes);
    }

    /// @notice Validators 0..count-1 vote `wh` on trade `t`; the relayer submits the votes.
    function voteBy(uint256 count, Settlement.Trade memory t, uint64 wh) internal {
        settle(t, votesBy(count, t, wh));
    }

    /// @notice The expected revert data of settleTrade when only `agreeing` current
    ///         validators agree on trade `t` (registry's quorum now).
    function noQuorum(Settlement.Trade memory t, uint256 agreeing) internal view returns (bytes memory) {
        return abi.encodeWithSelector(Settlement.NoQuorum.selector, idOf(t), agreeing, registry.quorum());
    }

    /// @notice The expected revert data of settleTrade for an invalid vote of `validator`.
    function invalidVote(Settlement.Trade memory t, address validator) internal view returns (bytes memory) {
        return abi.encodeWithSelector(Settlement.InvalidVote.selector, idOf(t), validator);
    }

    /// @notice Wh of `order` that accepted trades fill (the contract's packed order use).
    function filledOf(Settlement.Order memory order) internal view returns (uint64) {
        return settlement.orderUse(order.participant, order.nonce).filledWh;
    }

    // ------------------------------------------------------------ small arrays

    /// @notice A one-element array.
    function one(address a) internal pure returns (address[] memory arr) {
        arr = new address[](1);
        arr[0] = a;
    }

    /// @notice A one-element array.
    function one(Settlement.TradeInput memory input) internal pure returns (Settlement.TradeInput[] memory arr) {
        arr = new Settlement.TradeInput[](1);
        arr[0] = input;
    }

    /// @notice A two-element array.
    function two(Settlement.TradeInput memory a, Settlement.TradeInput memory b)
        internal
        pure
        returns (Settlement.TradeInput[] memory arr)
    {
        arr = new Settlement.TradeInput[](2);
        (arr[0], arr[1]) = (a, b);
    }

    /// @notice A one-element array.
    function oneTrade(Settlement.Trade memory t) internal pure returns (Settlement.Trade[] memory arr) {
        arr = new Settlement.Trade[](1);
        arr[0] = t;
    }

    /// @notice A one-element array of vote sets.
    function oneVoteSet(Settlement.SignedVote[] memory votes)
        internal
        pure
        returns (Settlement.SignedVote[][] memory arr)
    {
        arr = new Settlement.SignedVote[][](1);
        arr[0] = votes;
    }

    /// @notice A vote set of one vote.
    function oneVote(Settlement.SignedVote memory v) internal pure returns (Settlement.SignedVote[] memory arr) {
        arr = new Settlement.SignedVote[](1);
        arr[0] = v;
    }

    /// @notice `votes` with `extra` appended (a fresh array).
    function withVote(Settlement.SignedVote[] memory votes, Settlement.SignedVote memory extra)
        internal
        pure
        returns (Settlement.SignedVote[] memory arr)
    {
        arr = new Settlement.SignedVote[](votes.length + 1);
        for (uint256 i; i < votes.length; ++i) {
            arr[i] = votes[i];
        }
        arr[votes.length] = extra;
    }

    /// @notice A three-element array of whs.
    function whs3(uint64 a, uint64 b, uint64 c) internal pure returns (uint64[] memory arr) {
        arr = new uint64[](3);
        (arr[0], arr[1], arr[2]) = (a, b, c);
    }

    /// @notice A four-element array of whs.
    function whs4(uint64 a, uint64 b, uint64 c, uint64 d) internal pure returns (uint64[] memory arr) {
        arr = new uint64[](4);
        (arr[0], arr[1], arr[2], arr[3]) = (a, b, c, d);
    }
}
