// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EnergyToken} from "./EnergyToken.sol";
import {ValidatorRegistry} from "./ValidatorRegistry.sol";

/// @title Settlement
/// @notice Escrowed settlement of cleared P2P energy trades that nobody has to trust.
/// @dev Buyers prepay into escrow. A trade enters a round only with both participants'
///      EIP-712 signed orders: the contract checks the signatures, that the price lies
///      within both limits and the fee within the buyer's cap, that neither order is
///      filled beyond its quantity, expired, cancelled or signed again under a used
///      nonce, and that the round ends before either order expires; it locks exactly
///      quantity x (price + fee) from the buyer, or drops the trade (with an event) if
///      the buyer's free balance is short. Rounds of any size are opened, filled in
///      chunks and sealed. Validators of the {ValidatorRegistry} vote the delivered Wh of
///      each trade; when strictly more than two thirds of the validators registered now
///      agree within the tolerance (a per-mille of the quantity fixed at deployment), the
///      seller is paid for the median of the agreeing votes (at most the quantity), the
///      fee goes to the fee recipient, the rest of the lock returns to the buyer, and the
///      buyer receives as many energy tokens. Without a quorum by the deadline anyone can
///      return the lock to the buyer.
///
///      Conservation: the payment tokens this contract holds always equal the sum of all
///      free balances plus all locked amounts; locked amounts are exactly the locks of
///      open trades.
contract Settlement is AccessControl, Pausable, ReentrancyGuardTransient, EIP712 {
    using SafeERC20 for IERC20;

    /// @notice Opens, fills and seals clearing rounds.
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @notice Pauses and unpauses.
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    /// @notice Largest agreement tolerance a deployment may choose: 10 % of a trade.
    uint64 public constant MAX_TOLERANCE_PER_MILLE = 100;
    /// @notice A round's deadline lies at most this far ahead when it opens.
    uint64 public constant MAX_ROUND_DURATION_S = 30 days;
    /// @notice An extension moves a deadline by at most this much.
    uint64 public constant MAX_EXTENSION_S = 7 days;

    bytes32 public constant ORDER_TYPEHASH = keccak256(
        "Order(address participant,bool isBuy,uint64 slotStart,uint64 slotEnd,uint64 quantityWh,"
        "uint64 limitMicroEurPerKwh,uint64 maxFeeMicroEurPerKwh,uint64 expiry,uint64 nonce)"
    );

    /// @notice An order as its participant signed it (EIP-712). Energy in Wh, prices in
    ///         micro-EUR per kWh, times in Unix seconds.
    /// @param limitMicroEurPerKwh A buyer's maximum for energy plus fee, a seller's minimum.
    /// @param maxFeeMicroEurPerKwh A buyer's cap on the grid fee (0 for a seller).
    /// @param expiry No round may lock money for this order beyond this time.
    struct Order {
        address participant;
        bool isBuy;
        uint64 slotStart;
        uint64 slotEnd;
        uint64 quantityWh;
        uint64 limitMicroEurPerKwh;
        uint64 maxFeeMicroEurPerKwh;
        uint64 expiry;
        uint64 nonce;
    }

    /// @notice A trade as the operator submits it: both signed orders and the terms.
    struct TradeInput {
        Order buy;
        bytes buySignature;
        Order sell;
        bytes sellSignature;
        uint64 quantityWh;
        uint64 priceMicroEurPerKwh;
        uint64 feeMicroEurPerKwh;
    }

    /// @notice An accepted trade, as stored (by hash) and as validators and reclaims give it.
    struct Trade {
        uint64 roundId;
        bytes32 buyOrder;
        bytes32 sellOrder;
        address buyer;
        address seller;
        uint64 slotStart;
        uint64 slotEnd;
        uint64 quantityWh;
        uint64 priceMicroEurPerKwh;
        uint64 feeMicroEurPerKwh;
    }

    enum RoundStatus {
        None,
        Open,
        Sealed
    }

    /// @notice A clearing round.
    /// @param minExpiry The earliest expiry of its orders: its deadline never passes it.
    struct Round {
        bytes32 inputHash;
        uint64 deadline;
        uint64 minExpiry;
        uint32 trades;
        RoundStatus status;
    }

    enum TradeState {
        None,
        Open,
        Settled,
        Reclaimed
    }

    /// @notice Why a batch skipped a trade instead of reverting.
    enum SkipReason {
        None,
        UnknownTrade,
        RoundNotSealed,
        TradeFinal,
        AttestationClosed,
        AlreadyVoted,
        NotExpired
    }

    /// @notice One validator's vote on a trade, under the epoch it was registered with.
    struct Vote {
        address validator;
        uint32 epoch;
        uint64 wh;
    }

    /// @notice An account's escrow (both halves in one slot; amounts are range-checked).
    struct Account {
        uint128 free;
        uint128 locked;
    }

    IERC20 public immutable paymentToken;
    EnergyToken public immutable energyToken;
    ValidatorRegistry public immutable validators;
    /// @notice Receives the grid fees of settled trades.
    address public immutable feeRecipient;
    /// @notice Votes agree when they differ by at most this per-mille of the trade's quantity.
    uint64 public immutable tolerancePerMille;

    mapping(address account => Account) private _accounts;
    mapping(uint64 roundId => Round) private _rounds;
    /// @notice keccak256 of the accepted trade's {Trade} record, by trade id.
    mapping(bytes32 tradeId => bytes32 recordHash) public tradeRecord;
    mapping(bytes32 tradeId => TradeState) public tradeState;
    mapping(bytes32 tradeId => Vote[]) private _votes;
    /// @notice Wh of each signed order (by its EIP-712 digest) that accepted trades fill.
    mapping(bytes32 orderHash => uint64) public filledWh;
    /// @notice The order a participant's nonce was first used for.
    mapping(address participant => mapping(uint64 nonce => bytes32 orderHash)) public nonceOrder;
    mapping(address participant => mapping(uint64 nonce => bool)) public nonceCancelled;
    /// @notice Wh paid for by settled trades: exactly the energy tokens ever minted.
    uint256 public totalPaidWh;

    error ZeroAmount();
    error ZeroAddress();
    error SettlementToleranceTooLarge(uint64 perMille);
    error InsufficientBalance(address account, uint256 required, uint256 available);
    error LengthMismatch();
    error AmountTooLarge(uint256 amount);
    error RoundExists(uint64 roundId);
    error UnknownRound(uint64 roundId);
    error RoundNotOpen(uint64 roundId);
    error InvalidDeadline(uint64 roundId, uint64 deadline);
    /// @notice The signature is not the order's participant's.
    error InvalidOrderSignature(address participant, bytes32 orderHash);
    /// @notice The two orders are not one buy and one sell of the same slot.
    error OrdersDoNotMatch(bytes32 buyOrder, bytes32 sellOrder);
    error OrderExpired(bytes32 orderHash, uint64 expiry);
    error OrderCancelled(address participant, uint64 nonce);
    /// @notice The nonce was already used for another order.
    error NonceReused(address participant, uint64 nonce);
    error OrderOverfilled(bytes32 orderHash, uint64 filledWh, uint64 quantityWh);
    error PriceOutsideLimits(bytes32 tradeId);
    error TradeExists(bytes32 tradeId);
    error UnknownTrade(bytes32 tradeId);
    error TradeNotOpen(bytes32 tradeId);
    error RoundNotSealed(uint64 roundId);
    error AttestationClosed(uint64 roundId, uint64 deadline);
    error AlreadyVoted(bytes32 tradeId, address validator);
    error NotAValidator(address account);
    error DeadlineNotPassed(uint64 roundId, uint64 deadline);

    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event OrderNonceCancelled(address indexed participant, uint64 nonce);
    event RoundOpened(uint64 indexed roundId, bytes32 inputHash, uint64 deadline);
    event TradeAdded(
        uint64 indexed roundId, bytes32 indexed tradeId, address indexed buyer, address seller, uint64 quantityWh, uint256 locked
    );
    /// @notice The buyer's free balance did not cover the trade's lock: it is not in the round.
    event TradeDropped(
        uint64 indexed roundId, bytes32 indexed tradeId, address indexed buyer, uint256 required, uint256 available
    );
    event RoundSealed(uint64 indexed roundId, uint32 trades);
    event Voted(bytes32 indexed tradeId, address indexed validator, uint64 wh);
    event VoteSkipped(bytes32 indexed tradeId, address indexed validator, SkipReason reason);
    event TradeSettled(
        bytes32 indexed tradeId, uint64 paidWh, uint256 paidToSeller, uint256 fee, uint256 refundedToBuyer
    );
    event TradeReclaimed(bytes32 indexed tradeId, uint256 refundedToBuyer);
    event ReclaimSkipped(bytes32 indexed tradeId, SkipReason reason);
    event DeadlineExtended(uint64 indexed roundId, uint64 deadline);

    /// @param admin Receives the admin and pauser roles (grant OPERATOR_ROLE from it).
    /// @param payment The ERC-20 buyers prepay in.
    /// @param registry The validators whose quorum verifies delivery.
    /// @param fees Receives grid fees.
    /// @param tolerance Votes agree within this per-mille of a trade (at most 100).
    constructor(address admin, IERC20 payment, ValidatorRegistry registry, address fees, uint64 tolerance)
        EIP712("gridmatch Settlement", "2")
    {
        if (admin == address(0) || address(payment) == address(0) || address(registry) == address(0)) {
            revert ZeroAddress();
        }
        if (fees == address(0)) revert ZeroAddress();
        if (tolerance > MAX_TOLERANCE_PER_MILLE) revert SettlementToleranceTooLarge(tolerance);
        paymentToken = payment;
        validators = registry;
        feeRecipient = fees;
        tolerancePerMille = tolerance;
        // The energy token's only minter is this contract, fixed here: no admin can mint.
        energyToken = new EnergyToken(address(this));
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PAUSER_ROLE, admin);
    }

    // ---------------------------------------------------------------- escrow

    /// @notice Move `amount` payment tokens from the caller into its free balance.
    function deposit(uint256 amount) external whenNotPaused nonReentrant {
        if (amount == 0) revert ZeroAmount();
        _credit(msg.sender, amount);
        emit Deposited(msg.sender, amount);
        paymentToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Top up many accounts' free balances from the caller's tokens (a retailer or
    ///         community funding its members' prepaid accounts); they belong to the accounts.
    function depositFor(address[] calldata accounts, uint256[] calldata amounts) external whenNotPaused nonReentrant {
        uint256 n = accounts.length;
        if (amounts.length != n) revert LengthMismatch();
        uint256 total = 0;
        for (uint256 i; i < n; ++i) {
            if (accounts[i] == address(0)) revert ZeroAddress();
            if (amounts[i] == 0) revert ZeroAmount();
            _credit(accounts[i], amounts[i]);
            total += amounts[i];
            emit Deposited(accounts[i], amounts[i]);
        }
        paymentToken.safeTransferFrom(msg.sender, address(this), total);
    }

    /// @notice Withdraw `amount` of the caller's free balance; works while paused. Money
    ///         locked for an open trade is not free and cannot be withdrawn.
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Account storage account = _accounts[msg.sender];
        uint256 available = account.free;
        if (available < amount) revert InsufficientBalance(msg.sender, amount, available);
        account.free = uint128(available - amount);
        emit Withdrawn(msg.sender, amount);
        paymentToken.safeTransfer(msg.sender, amount);
    }

    /// @notice Free and locked balances of many accounts.
    function balancesOf(address[] calldata accounts)
        external
        view
        returns (uint256[] memory free, uint256[] memory locked)
    {
        free = new uint256[](accounts.length);
        locked = new uint256[](accounts.length);
        for (uint256 i; i < accounts.length; ++i) {
            Account storage account = _accounts[accounts[i]];
            (free[i], locked[i]) = (account.free, account.locked);
        }
    }

    /// @notice {tradeState} of many trades.
    function tradeStates(bytes32[] calldata tradeIds) external view returns (TradeState[] memory states) {
        states = new TradeState[](tradeIds.length);
        for (uint256 i; i < tradeIds.length; ++i) {
            states[i] = tradeState[tradeIds[i]];
        }
    }

    /// @notice A participant withdraws its signature: no trade may fill the order with
    ///         this nonce from now on (also one already partly filled).
    function cancelOrder(uint64 nonce) external {
        nonceCancelled[msg.sender][nonce] = true;
        emit OrderNonceCancelled(msg.sender, nonce);
    }

    // ---------------------------------------------------------------- orders

    /// @notice The EIP-712 digest a participant signs for `order`; also the order's id.
    function orderHash(Order calldata order) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    ORDER_TYPEHASH,
                    order.participant,
                    order.isBuy,
                    order.slotStart,
                    order.slotEnd,
                    order.quantityWh,
                    order.limitMicroEurPerKwh,
                    order.maxFeeMicroEurPerKwh,
                    order.expiry,
                    order.nonce
                )
            )
        );
    }

    /// @notice The EIP-712 domain separator (chain and this contract).
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice A trade's id: one per round and pair of orders.
    function tradeIdOf(uint64 roundId, bytes32 buyOrder, bytes32 sellOrder) public pure returns (bytes32) {
        return keccak256(abi.encode(roundId, buyOrder, sellOrder));
    }

    /// @notice What a trade locks from its buyer: quantity x (price + fee), rounded up.
    function lockAmount(uint64 quantityWh, uint64 price, uint64 fee) public pure returns (uint256) {
        return _ceilDiv(uint256(quantityWh) * (uint256(price) + fee), 1000);
    }

    // ---------------------------------------------------------------- rounds

    /// @notice Open round `roundId`; trades may be added until it is sealed.
    /// @param inputHash Hash of the round's inputs (the clearing's manifest), for audit.
    /// @param deadline Last time validators' votes count; at most 30 days ahead.
    function openRound(uint64 roundId, bytes32 inputHash, uint64 deadline)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
    {
        Round storage round = _rounds[roundId];
        if (round.status != RoundStatus.None) revert RoundExists(roundId);
        if (deadline <= block.timestamp || deadline > block.timestamp + MAX_ROUND_DURATION_S) {
            revert InvalidDeadline(roundId, deadline);
        }
        (round.inputHash, round.deadline, round.minExpiry, round.status) =
            (inputHash, deadline, type(uint64).max, RoundStatus.Open);
        emit RoundOpened(roundId, inputHash, deadline);
    }

    /// @notice Add a chunk of trades to an open round (any number of chunks per round).
    /// @dev Reverts on any trade whose orders or terms are not what the participants
    ///      signed; drops (with {TradeDropped}) a trade whose buyer cannot cover its lock.
    function addTrades(uint64 roundId, TradeInput[] calldata inputs)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
        nonReentrant
    {
        Round storage round = _rounds[roundId];
        if (round.status != RoundStatus.Open) revert RoundNotOpen(roundId);
        uint64 deadline = round.deadline;
        uint64 minExpiry = round.minExpiry;
        uint32 added = 0;
        for (uint256 i; i < inputs.length; ++i) {
            (bool accepted, uint64 expiry) = _addTrade(roundId, deadline, inputs[i]);
            if (accepted) {
                ++added;
                if (expiry < minExpiry) minExpiry = expiry;
            }
        }
        round.minExpiry = minExpiry;
        round.trades += added;
    }

    /// @notice Close a round to new trades and open it to validators' votes.
    function sealRound(uint64 roundId) external onlyRole(OPERATOR_ROLE) whenNotPaused {
        Round storage round = _rounds[roundId];
        if (round.status != RoundStatus.Open) revert RoundNotOpen(roundId);
        round.status = RoundStatus.Sealed;
        emit RoundSealed(roundId, round.trades);
    }

    /// @notice The round `roundId`.
    function rounds(uint64 roundId) external view returns (Round memory) {
        return _rounds[roundId];
    }

    /// @notice Move a round's deadline later, e.g. after a pause kept validators out:
    ///         only before it has passed, by at most {MAX_EXTENSION_S}, and never beyond
    ///         the earliest expiry of the round's orders.
    function extendDeadline(uint64 roundId, uint64 newDeadline) external onlyRole(DEFAULT_ADMIN_ROLE) {
        Round storage round = _rounds[roundId];
        if (round.status == RoundStatus.None) revert UnknownRound(roundId);
        uint64 deadline = round.deadline;
        if (
            block.timestamp > deadline || newDeadline <= deadline || newDeadline > deadline + MAX_EXTENSION_S
                || newDeadline > round.minExpiry
        ) revert InvalidDeadline(roundId, newDeadline);
        round.deadline = newDeadline;
        emit DeadlineExtended(roundId, newDeadline);
    }

    /// @notice Pause deposits, rounds, votes and reclaims (withdrawals stay open).
    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    /// @notice Undo {pause}.
    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    // ---------------------------------------------------------------- delivery

    /// @notice Vote the Wh a trade delivered (the caller must be a current validator).
    /// @dev Settles the trade once a quorum of current validators agrees.
    function attest(Trade calldata trade, uint64 deliveredWh) external whenNotPaused nonReentrant {
        uint32 epoch = _callerEpoch();
        bytes32 tradeId = tradeIdOf(trade.roundId, trade.buyOrder, trade.sellOrder);
        SkipReason reason = _voteProblem(trade, tradeId, epoch);
        if (reason == SkipReason.UnknownTrade) revert UnknownTrade(tradeId);
        if (reason == SkipReason.RoundNotSealed) revert RoundNotSealed(trade.roundId);
        if (reason == SkipReason.TradeFinal) revert TradeNotOpen(tradeId);
        if (reason == SkipReason.AttestationClosed) {
            revert AttestationClosed(trade.roundId, _rounds[trade.roundId].deadline);
        }
        if (reason == SkipReason.AlreadyVoted) revert AlreadyVoted(tradeId, msg.sender);
        _vote(trade, tradeId, epoch, deliveredWh, validators.quorum());
    }

    /// @notice {attest} for many trades; a trade that cannot take the vote is skipped
    ///         with a {VoteSkipped} event instead of reverting the batch.
    function attestBatch(Trade[] calldata trades, uint64[] calldata deliveredWh) external whenNotPaused nonReentrant {
        if (trades.length != deliveredWh.length) revert LengthMismatch();
        uint32 epoch = _callerEpoch();
        uint256 quorum = validators.quorum();
        for (uint256 i; i < trades.length; ++i) {
            Trade calldata trade = trades[i];
            bytes32 tradeId = tradeIdOf(trade.roundId, trade.buyOrder, trade.sellOrder);
            SkipReason reason = _voteProblem(trade, tradeId, epoch);
            if (reason != SkipReason.None) {
                emit VoteSkipped(tradeId, msg.sender, reason);
                continue;
            }
            _vote(trade, tradeId, epoch, deliveredWh[i], quorum);
        }
    }

    /// @notice After its round's deadline, return an unsettled trade's lock to its buyer.
    /// @dev Anyone may call it: the money can only go to the buyer. Not while paused.
    function reclaim(Trade calldata trade) external whenNotPaused nonReentrant {
        bytes32 tradeId = tradeIdOf(trade.roundId, trade.buyOrder, trade.sellOrder);
        SkipReason reason = _reclaimProblem(trade, tradeId);
        if (reason == SkipReason.UnknownTrade) revert UnknownTrade(tradeId);
        if (reason == SkipReason.TradeFinal) revert TradeNotOpen(tradeId);
        if (reason == SkipReason.NotExpired) {
            revert DeadlineNotPassed(trade.roundId, _rounds[trade.roundId].deadline);
        }
        _reclaim(trade, tradeId);
    }

    /// @notice {reclaim} for many trades, skipping (with an event) those not reclaimable.
    function reclaimBatch(Trade[] calldata trades) external whenNotPaused nonReentrant {
        for (uint256 i; i < trades.length; ++i) {
            Trade calldata trade = trades[i];
            bytes32 tradeId = tradeIdOf(trade.roundId, trade.buyOrder, trade.sellOrder);
            SkipReason reason = _reclaimProblem(trade, tradeId);
            if (reason != SkipReason.None) {
                emit ReclaimSkipped(tradeId, reason);
                continue;
            }
            _reclaim(trade, tradeId);
        }
    }

    /// @notice The votes cast on a trade (also those of validators revoked since: they no
    ///         longer count).
    function votesOf(bytes32 tradeId) external view returns (Vote[] memory) {
        return _votes[tradeId];
    }

    // ---------------------------------------------------------------- internals: trades

    function _addTrade(uint64 roundId, uint64 deadline, TradeInput calldata input)
        private
        returns (bool accepted, uint64 expiry)
    {
        Trade memory trade = _checkedTrade(roundId, deadline, input);
        bytes32 tradeId = tradeIdOf(roundId, trade.buyOrder, trade.sellOrder);
        uint256 lock = lockAmount(trade.quantityWh, trade.priceMicroEurPerKwh, trade.feeMicroEurPerKwh);
        Account storage account = _accounts[trade.buyer];
        if (account.free < lock) {
            emit TradeDropped(roundId, tradeId, trade.buyer, lock, account.free);
            return (false, 0);
        }
        // lock <= free < 2^128, and free + locked only moves between the halves.
        account.free -= uint128(lock);
        account.locked += uint128(lock);
        filledWh[trade.buyOrder] += trade.quantityWh;
        filledWh[trade.sellOrder] += trade.quantityWh;
        tradeRecord[tradeId] = keccak256(abi.encode(trade));
        tradeState[tradeId] = TradeState.Open;
        emit TradeAdded(roundId, tradeId, trade.buyer, trade.seller, trade.quantityWh, lock);
        expiry = input.buy.expiry < input.sell.expiry ? input.buy.expiry : input.sell.expiry;
        return (true, expiry);
    }

    /// @dev The trade record of `input`, after checking both orders and the terms.
    function _checkedTrade(uint64 roundId, uint64 deadline, TradeInput calldata input)
        private
        returns (Trade memory trade)
    {
        bytes32 buyHash = _checkedOrder(input.buy, input.buySignature, deadline);
        bytes32 sellHash = _checkedOrder(input.sell, input.sellSignature, deadline);
        Order calldata buy = input.buy;
        Order calldata sell = input.sell;
        if (
            !buy.isBuy || sell.isBuy || buy.slotStart != sell.slotStart || buy.slotEnd != sell.slotEnd
                || buy.participant == sell.participant
        ) revert OrdersDoNotMatch(buyHash, sellHash);
        bytes32 tradeId = tradeIdOf(roundId, buyHash, sellHash);
        if (tradeRecord[tradeId] != bytes32(0)) revert TradeExists(tradeId);
        if (input.quantityWh == 0) revert ZeroAmount();
        if (
            input.priceMicroEurPerKwh < sell.limitMicroEurPerKwh
                || uint256(input.priceMicroEurPerKwh) + input.feeMicroEurPerKwh > buy.limitMicroEurPerKwh
                || input.feeMicroEurPerKwh > buy.maxFeeMicroEurPerKwh
        ) revert PriceOutsideLimits(tradeId);
        _checkFill(buyHash, buy.quantityWh, input.quantityWh);
        _checkFill(sellHash, sell.quantityWh, input.quantityWh);
        trade = Trade(
            roundId,
            buyHash,
            sellHash,
            buy.participant,
            sell.participant,
            buy.slotStart,
            buy.slotEnd,
            input.quantityWh,
            input.priceMicroEurPerKwh,
            input.feeMicroEurPerKwh
        );
    }

    /// @dev The order's id, after checking its signature, expiry and nonce.
    function _checkedOrder(Order calldata order, bytes calldata signature, uint64 deadline)
        private
        returns (bytes32 hash)
    {
        hash = orderHash(order);
        (address signer, ECDSA.RecoverError failure,) = ECDSA.tryRecover(hash, signature);
        if (failure != ECDSA.RecoverError.NoError || signer != order.participant || signer == address(0)) {
            revert InvalidOrderSignature(order.participant, hash);
        }
        // A round must end (deadline) before any of its orders expires.
        if (order.expiry < block.timestamp || order.expiry < deadline) revert OrderExpired(hash, order.expiry);
        if (order.slotStart >= order.slotEnd) revert OrdersDoNotMatch(hash, hash);
        if (nonceCancelled[order.participant][order.nonce]) revert OrderCancelled(order.participant, order.nonce);
        bytes32 bound = nonceOrder[order.participant][order.nonce];
        if (bound == bytes32(0)) nonceOrder[order.participant][order.nonce] = hash;
        else if (bound != hash) revert NonceReused(order.participant, order.nonce);
    }

    function _checkFill(bytes32 hash, uint64 quantityWh, uint64 moreWh) private view {
        uint256 filled = uint256(filledWh[hash]) + moreWh;
        if (filled > quantityWh) revert OrderOverfilled(hash, filledWh[hash], quantityWh);
    }

    // ---------------------------------------------------------------- internals: votes

    function _callerEpoch() private view returns (uint32 epoch) {
        epoch = validators.epochOf(msg.sender);
        if (epoch == 0) revert NotAValidator(msg.sender);
    }

    function _knownTrade(Trade calldata trade, bytes32 tradeId) private view returns (bool) {
        bytes32 record = tradeRecord[tradeId];
        return record != bytes32(0) && record == keccak256(abi.encode(trade));
    }

    function _voteProblem(Trade calldata trade, bytes32 tradeId, uint32 epoch) private view returns (SkipReason) {
        if (!_knownTrade(trade, tradeId)) return SkipReason.UnknownTrade;
        Round storage round = _rounds[trade.roundId];
        if (round.status != RoundStatus.Sealed) return SkipReason.RoundNotSealed;
        if (tradeState[tradeId] != TradeState.Open) return SkipReason.TradeFinal;
        if (block.timestamp > round.deadline) return SkipReason.AttestationClosed;
        Vote[] storage votes = _votes[tradeId];
        for (uint256 i; i < votes.length; ++i) {
            if (votes[i].validator == msg.sender && votes[i].epoch == epoch) return SkipReason.AlreadyVoted;
        }
        return SkipReason.None;
    }

    function _vote(Trade calldata trade, bytes32 tradeId, uint32 epoch, uint64 wh, uint256 quorum) private {
        Vote[] storage votes = _votes[tradeId];
        bool replaced = false;
        for (uint256 i; i < votes.length; ++i) {
            // A vote from an earlier registration of the same validator is void: replace it.
            if (votes[i].validator == msg.sender) {
                votes[i] = Vote(msg.sender, epoch, wh);
                replaced = true;
                break;
            }
        }
        if (!replaced) votes.push(Vote(msg.sender, epoch, wh));
        emit Voted(tradeId, msg.sender, wh);
        (uint256 agreeing, uint64 median) = _agreement(votes, _toleranceWh(trade.quantityWh));
        if (agreeing >= quorum) _settle(trade, tradeId, median);
    }

    function _toleranceWh(uint64 quantityWh) private view returns (uint64) {
        uint64 tolerance = uint64(uint256(quantityWh) * tolerancePerMille / 1000);
        return tolerance == 0 ? 1 : tolerance;
    }

    /// @dev The largest group of current validators' votes within the tolerance of each
    ///      other, and its median (the lower one for an even group); of equally large
    ///      groups, the one with the lowest votes. The votes of revoked validators (or of
    ///      an earlier registration) are left out. Independent of the order votes came in.
    function _agreement(Vote[] storage votes, uint64 toleranceWh) private view returns (uint256 size, uint64 median) {
        uint256 n = votes.length;
        uint64[] memory values = new uint64[](n);
        uint256 m = 0;
        for (uint256 i; i < n; ++i) {
            Vote storage vote = votes[i];
            if (validators.epochOf(vote.validator) == vote.epoch) values[m++] = vote.wh;
        }
        _sort(values, m);
        // A window [i, j) of sorted values agrees when its spread is within the tolerance.
        uint256 bestStart = 0;
        uint256 j = 0;
        for (uint256 i; i < m; ++i) {
            if (j < i) j = i;
            while (j < m && values[j] - values[i] <= toleranceWh) ++j;
            if (j - i > size) (size, bestStart) = (j - i, i);
        }
        if (size > 0) median = values[bestStart + (size - 1) / 2];
    }

    /// @dev Insertion sort of the first `m` values: a handful of validators.
    function _sort(uint64[] memory values, uint256 m) private pure {
        for (uint256 i = 1; i < m; ++i) {
            uint64 value = values[i];
            uint256 j = i;
            while (j > 0 && values[j - 1] > value) {
                values[j] = values[j - 1];
                --j;
            }
            values[j] = value;
        }
    }

    function _settle(Trade calldata trade, bytes32 tradeId, uint64 verifiedWh) private {
        tradeState[tradeId] = TradeState.Settled;
        uint64 paidWh = verifiedWh < trade.quantityWh ? verifiedWh : trade.quantityWh;
        uint256 lock = lockAmount(trade.quantityWh, trade.priceMicroEurPerKwh, trade.feeMicroEurPerKwh);
        uint256 payment = uint256(paidWh) * trade.priceMicroEurPerKwh / 1000;
        uint256 fee = uint256(paidWh) * trade.feeMicroEurPerKwh / 1000;
        // Rounded down against the lock's rounding up: payment + fee <= lock.
        uint256 refund = lock - payment - fee;
        _unlock(trade.buyer, lock);
        _credit(trade.seller, payment);
        _credit(feeRecipient, fee);
        _credit(trade.buyer, refund);
        totalPaidWh += paidWh;
        emit TradeSettled(tradeId, paidWh, payment, fee, refund);
        if (paidWh > 0) energyToken.deliver(trade.seller, trade.buyer, trade.slotStart, paidWh);
    }

    // ---------------------------------------------------------------- internals: reclaims

    function _reclaimProblem(Trade calldata trade, bytes32 tradeId) private view returns (SkipReason) {
        if (!_knownTrade(trade, tradeId)) return SkipReason.UnknownTrade;
        if (tradeState[tradeId] != TradeState.Open) return SkipReason.TradeFinal;
        if (block.timestamp <= _rounds[trade.roundId].deadline) return SkipReason.NotExpired;
        return SkipReason.None;
    }

    function _reclaim(Trade calldata trade, bytes32 tradeId) private {
        tradeState[tradeId] = TradeState.Reclaimed;
        uint256 lock = lockAmount(trade.quantityWh, trade.priceMicroEurPerKwh, trade.feeMicroEurPerKwh);
        _unlock(trade.buyer, lock);
        _credit(trade.buyer, lock);
        emit TradeReclaimed(tradeId, lock);
    }

    // ---------------------------------------------------------------- internals: balances

    function _unlock(address buyer, uint256 amount) private {
        // amount is an open trade's lock, part of locked < 2^128.
        _accounts[buyer].locked -= uint128(amount);
    }

    function _credit(address account, uint256 amount) private {
        Account storage balances = _accounts[account];
        uint256 free = balances.free + amount;
        if (free > type(uint128).max) revert AmountTooLarge(amount);
        balances.free = uint128(free);
    }

    function _ceilDiv(uint256 a, uint256 b) private pure returns (uint256) {
        return a == 0 ? 0 : (a - 1) / b + 1;
    }
}
