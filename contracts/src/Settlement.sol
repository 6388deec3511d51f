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
import {EnergyCertificates} from "./EnergyCertificates.sol";
import {ValidatorRegistry} from "./ValidatorRegistry.sol";

/// @title Settlement
/// @notice Escrowed settlement of cleared P2P energy trades that nobody has to trust.
/// @dev Buyers prepay into escrow. A trade enters a round only with both participants'
///      EIP-712 signed orders: the contract checks the signatures, that the price lies
///      within both limits and the fee within the buyer's cap, that neither order is
///      filled beyond its quantity, expired, cancelled or signed again under a used
///      nonce, that the round ends before either order expires, and that the trade's
///      slot ends at least {MIN_VOTING_WINDOW_S} before the round's deadline; it locks
///      exactly quantity x (price + fee) from the buyer, or drops the trade (with an event) if
///      the buyer's free balance is short. Rounds of any size are opened, filled in
///      chunks and sealed. Validators of the {ValidatorRegistry} sign (EIP-712) the Wh
///      each trade delivered; anyone may submit the signed votes, from the end of the
///      trade's slot (block time) to the round's deadline. When strictly more than
///      two thirds of the validators registered now agree within the tolerance (a
///      per-mille of the quantity fixed at deployment), the seller is paid for the median
///      of the agreeing votes (at most the quantity), the fee goes to the fee recipient,
///      the rest of the lock returns to the buyer, and the buyer receives as many energy
///      tokens. A revoked validator's signature no longer counts. Without a quorum by the
///      deadline anyone can return the lock to the buyer. The same verified Wh become
///      {EnergyCertificates} of the seller's device-hour once all its trades are final
///      (this contract is their only issuer; anyone may ask for {issueCertificates}).
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
    /// @notice A trade's slot must end at least this long before its round's deadline:
    ///         the validators' time to read the meters and vote after delivery. Without
    ///         it a trade delivered after the deadline could never settle, and its buyer
    ///         would reclaim the lock for energy it received.
    uint64 public constant MIN_VOTING_WINDOW_S = 1 hours;

    bytes32 public constant ATTESTATION_TYPEHASH =
        keccak256("Attestation(bytes32 tradeId,uint64 deliveredWh,uint32 epoch)");

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
    enum WithdrawReason {
        OrderCancelled,
        HourCertified
    }

    enum SkipReason {
        None,
        UnknownTrade,
        RoundNotSealed,
        TradeFinal,
        AttestationClosed,
        NotExpired,
        InvalidVote,
        NoQuorum,
        SlotNotEnded
    }

    /// @notice A validator's EIP-712 signed statement of the Wh a trade delivered.
    /// @param epoch The validator's registration it signed under: the vote counts only
    ///        while that registration lasts (not after a revocation, nor a re-registration).
    struct SignedVote {
        address validator;
        uint32 epoch;
        uint64 deliveredWh;
        bytes signature;
    }

    /// @notice How much of a signed order accepted trades fill, and which order its nonce
    ///         is bound to (the first 24 bytes of its digest): one storage slot per order.
    struct OrderUse {
        bytes24 orderHash;
        uint64 filledWh;
    }

    /// @notice An account's escrow (both halves in one slot; amounts are range-checked).
    struct Account {
        uint128 free;
        uint128 locked;
    }

    IERC20 public immutable paymentToken;
    EnergyToken public immutable energyToken;
    /// @notice Certificates of the verified Wh, per seller and hour; this contract issues them.
    EnergyCertificates public immutable certificates;
    ValidatorRegistry public immutable validators;
    /// @notice Receives the grid fees of settled trades.
    address public immutable feeRecipient;
    /// @notice Votes agree when they differ by at most this per-mille of the trade's quantity.
    uint64 public immutable tolerancePerMille;

    mapping(address account => Account) private _accounts;
    mapping(uint64 roundId => Round) private _rounds;
    /// @dev Per trade id: keccak256 of its {Trade} record with the two lowest bits
    ///      replaced by its {TradeState} (one storage slot per trade).
    mapping(bytes32 tradeId => uint256 recordAndState) private _trades;
    mapping(address participant => mapping(uint64 nonce => OrderUse)) private _orders;
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
    /// @notice The nonce was already used for another order.
    error NonceReused(address participant, uint64 nonce);
    error OrderOverfilled(bytes32 orderHash, uint64 filledWh, uint64 quantityWh);
    error PriceOutsideLimits(bytes32 tradeId);
    error TradeExists(bytes32 tradeId);
    error UnknownTrade(bytes32 tradeId);
    error TradeNotOpen(bytes32 tradeId);
    error RoundNotSealed(uint64 roundId);
    error AttestationClosed(uint64 roundId, uint64 deadline);
    /// @notice A vote's signature is not its validator's, or a validator votes twice.
    error InvalidVote(bytes32 tradeId, address validator);
    /// @notice Fewer current validators agree than the quorum.
    error NoQuorum(bytes32 tradeId, uint256 agreeing, uint256 quorum);
    error DeadlineNotPassed(uint64 roundId, uint64 deadline);
    /// @notice The round's deadline has passed: no more trades, no sealing.
    error RoundExpired(uint64 roundId, uint64 deadline);
    /// @notice The trade's delivery slot has not ended yet (`slotEnd` > now): no meter
    ///         reading of it is final, so no vote on it can count.
    error SettlementSlotNotEnded(bytes32 tradeId, uint64 slotEnd, uint256 now_);
    /// @notice The trade's slot ends later than {MIN_VOTING_WINDOW_S} before its round's
    ///         deadline: it could not be voted on before its lock became reclaimable.
    error SettlementSlotAfterDeadline(bytes32 tradeId, uint64 slotEnd, uint64 deadline);

    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event OrderNonceCancelled(address indexed participant, uint64 nonce);
    event RoundOpened(uint64 indexed roundId, bytes32 inputHash, uint64 deadline);
    event TradeAdded(
        uint64 indexed roundId,
        bytes32 indexed tradeId,
        address indexed buyer,
        address seller,
        uint64 quantityWh,
        uint256 locked
    );
    /// @notice The buyer's free balance did not cover the trade's lock: it is not in the round.
    event TradeDropped(
        uint64 indexed roundId, bytes32 indexed tradeId, address indexed buyer, uint256 required, uint256 available
    );
    /// @notice One of the trade's orders was cancelled, or its seller's hour is already
    ///         certified, by the time the chunk landed: it is not in the round. Either can be
    ///         done by someone other than the operator just before (a signer's
    ///         `cancelOrder`, anyone's `issueCertificates`), so it drops the trade, not
    ///         the chunk.
    event TradeWithdrawn(
        uint64 indexed roundId, bytes32 indexed tradeId, address indexed participant, WithdrawReason reason
    );
    event RoundSealed(uint64 indexed roundId, uint32 trades);
    event SettleSkipped(bytes32 indexed tradeId, SkipReason reason);
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
        // The same for the certificates: only verified deliveries become certificates.
        certificates = new EnergyCertificates(address(this));
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

    /// @notice What happened to a trade.
    function tradeState(bytes32 tradeId) public view returns (TradeState) {
        return TradeState(_trades[tradeId] & 3);
    }

    /// @notice How much of the order with `nonce` of `participant` accepted trades fill,
    ///         and the first 24 bytes of the order digest the nonce is bound to.
    function orderUse(address participant, uint64 nonce) external view returns (OrderUse memory) {
        return _orders[participant][nonce];
    }

    /// @notice {tradeState} of many trades.
    function tradeStates(bytes32[] calldata tradeIds) external view returns (TradeState[] memory states) {
        states = new TradeState[](tradeIds.length);
        for (uint256 i; i < tradeIds.length; ++i) {
            states[i] = tradeState(tradeIds[i]);
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
    /// @param deadline Last time validators' votes count; at most 30 days ahead. Every
    ///        trade's slot must end at least {MIN_VOTING_WINDOW_S} before it.
    function openRound(uint64 roundId, bytes32 inputHash, uint64 deadline)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
    {
        if (_rounds[roundId].status != RoundStatus.None) revert RoundExists(roundId);
        if (deadline <= block.timestamp || deadline > block.timestamp + MAX_ROUND_DURATION_S) {
            revert InvalidDeadline(roundId, deadline);
        }
        _rounds[roundId] = Round({
            inputHash: inputHash, deadline: deadline, minExpiry: type(uint64).max, trades: 0, status: RoundStatus.Open
        });
        emit RoundOpened(roundId, inputHash, deadline);
    }

    /// @notice Add a chunk of trades to an open round (any number of chunks per round).
    /// @dev Reverts on any trade whose orders or terms are not what the participants
    ///      signed, or whose slot ends too late for the round's deadline
    ///      ({SettlementSlotAfterDeadline}); drops (with {TradeDropped}) a trade whose
    ///      buyer cannot cover its lock, and (with {TradeWithdrawn}) one whose order was
    ///      cancelled or whose seller's hour is certified.
    function addTrades(uint64 roundId, TradeInput[] calldata inputs)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
        nonReentrant
    {
        Round storage round = _rounds[roundId];
        if (round.status != RoundStatus.Open) revert RoundNotOpen(roundId);
        uint64 deadline = round.deadline;
        // A trade added after the deadline could never be voted on, yet would use up
        // its orders' quantity for good.
        if (block.timestamp > deadline) revert RoundExpired(roundId, deadline);
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
        if (block.timestamp > round.deadline) revert RoundExpired(roundId, round.deadline);
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

    /// @notice Pause deposits, rounds and votes (withdrawals and reclaims stay open).
    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    /// @notice Undo {pause}.
    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    // ---------------------------------------------------------------- delivery

    /// @notice The EIP-712 digest a validator registered under `epoch` signs to vote that a
    ///         trade delivered `deliveredWh`.
    function attestationHash(bytes32 tradeId, uint64 deliveredWh, uint32 epoch) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(ATTESTATION_TYPEHASH, tradeId, deliveredWh, epoch)));
    }

    /// @notice Settle a trade with its validators' signed votes (anyone may submit them).
    /// @dev Reverts before the trade's slot has ended ({SettlementSlotNotEnded}: delivery
    ///      is not over, no reading of it is final) and unless strictly more than two
    ///      thirds of the validators registered now signed votes that agree within the
    ///      tolerance; pays the median of the agreeing votes, at most the quantity.
    function settleTrade(Trade calldata trade, SignedVote[] calldata votes) external whenNotPaused nonReentrant {
        bytes32 tradeId = tradeIdOf(trade.roundId, trade.buyOrder, trade.sellOrder);
        SkipReason reason = _settleProblem(trade, tradeId);
        if (reason == SkipReason.UnknownTrade) revert UnknownTrade(tradeId);
        if (reason == SkipReason.RoundNotSealed) revert RoundNotSealed(trade.roundId);
        if (reason == SkipReason.TradeFinal) revert TradeNotOpen(tradeId);
        if (reason == SkipReason.SlotNotEnded) revert SettlementSlotNotEnded(tradeId, trade.slotEnd, block.timestamp);
        if (reason == SkipReason.AttestationClosed) {
            revert AttestationClosed(trade.roundId, _rounds[trade.roundId].deadline);
        }
        (bool valid, uint256 agreeing, uint64 median) = _tally(tradeId, trade.quantityWh, votes);
        if (!valid) revert InvalidVote(tradeId, _firstInvalid(tradeId, votes));
        uint256 quorum = validators.quorum();
        if (agreeing < quorum) revert NoQuorum(tradeId, agreeing, quorum);
        _settle(trade, tradeId, median);
    }

    /// @notice {settleTrade} for many trades; a trade that cannot settle (unknown, not
    ///         sealed, final, its slot not ended, late, an invalid vote, no quorum) is
    ///         skipped with a {SettleSkipped} event instead of reverting the batch.
    function settleBatch(Trade[] calldata trades, SignedVote[][] calldata votes) external whenNotPaused nonReentrant {
        if (trades.length != votes.length) revert LengthMismatch();
        uint256 quorum = validators.quorum();
        for (uint256 i; i < trades.length; ++i) {
            Trade calldata trade = trades[i];
            bytes32 tradeId = tradeIdOf(trade.roundId, trade.buyOrder, trade.sellOrder);
            SkipReason reason = _settleProblem(trade, tradeId);
            uint256 agreeing = 0;
            uint64 median = 0;
            if (reason == SkipReason.None) {
                bool valid;
                (valid, agreeing, median) = _tally(tradeId, trade.quantityWh, votes[i]);
                if (!valid) reason = SkipReason.InvalidVote;
                else if (agreeing < quorum) reason = SkipReason.NoQuorum;
            }
            if (reason != SkipReason.None) {
                emit SettleSkipped(tradeId, reason);
                continue;
            }
            _settle(trade, tradeId, median);
        }
    }

    /// @notice After its round's deadline, return an unsettled trade's lock to its buyer.
    /// @dev Anyone may call it: the money can only go to the buyer. Open while paused,
    ///      as withdrawals are: a pause never holds a lock past its round's deadline
    ///      (the admin may extend a deadline before it passes, within the orders' expiry).
    function reclaim(Trade calldata trade) external nonReentrant {
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
    function reclaimBatch(Trade[] calldata trades) external nonReentrant {
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

    // ---------------------------------------------------------------- certificates

    /// @notice Issue the certificates of sellers' hours whose trades are all final (settled
    ///         or reclaimed): each with exactly the Wh the quorums verified, to the buyers
    ///         who received them. Anyone may ask: the outcome is fixed by the votes.
    /// @dev Reverts (with the {EnergyCertificates} error) if any request cannot be issued:
    ///      trades still open, issued already, nothing verified, or a buyer left out.
    function issueCertificates(EnergyCertificates.IssueRequest[] calldata requests)
        external
        whenNotPaused
        nonReentrant
        returns (uint256[] memory ids)
    {
        return certificates.issue(requests);
    }

    // ---------------------------------------------------------------- internals: trades

    function _addTrade(uint64 roundId, uint64 deadline, TradeInput calldata input)
        private
        returns (bool accepted, uint64 expiry)
    {
        Trade memory trade = _checkedTrade(roundId, deadline, input);
        bytes32 tradeId = tradeIdOf(roundId, trade.buyOrder, trade.sellOrder);
        if (nonceCancelled[trade.buyer][input.buy.nonce]) {
            emit TradeWithdrawn(roundId, tradeId, trade.buyer, WithdrawReason.OrderCancelled);
            return (false, 0);
        }
        if (nonceCancelled[trade.seller][input.sell.nonce]) {
            emit TradeWithdrawn(roundId, tradeId, trade.seller, WithdrawReason.OrderCancelled);
            return (false, 0);
        }
        // A certified hour's certificate is final: no more trades of that seller and hour.
        if (certificates.isCertified(trade.seller, trade.slotStart)) {
            emit TradeWithdrawn(roundId, tradeId, trade.seller, WithdrawReason.HourCertified);
            return (false, 0);
        }
        uint256 lock = lockAmount(trade.quantityWh, trade.priceMicroEurPerKwh, trade.feeMicroEurPerKwh);
        Account storage account = _accounts[trade.buyer];
        if (account.free < lock) {
            emit TradeDropped(roundId, tradeId, trade.buyer, lock, account.free);
            return (false, 0);
        }
        // lock <= free < 2^128, and free + locked only moves between the halves.
        account.free -= uint128(lock);
        account.locked += uint128(lock);
        _fill(input.buy, trade.buyOrder, trade.quantityWh);
        _fill(input.sell, trade.sellOrder, trade.quantityWh);
        _trades[tradeId] = _recordWord(trade, TradeState.Open);
        emit TradeAdded(roundId, tradeId, trade.buyer, trade.seller, trade.quantityWh, lock);
        // Would revert once the seller's hour is certified (withdrawn above).
        certificates.recordTrade(trade.seller, trade.slotStart, trade.slotEnd);
        expiry = input.buy.expiry < input.sell.expiry ? input.buy.expiry : input.sell.expiry;
        return (true, expiry);
    }

    /// @dev The trade record of `input`, after checking both orders and the terms.
    function _checkedTrade(uint64 roundId, uint64 deadline, TradeInput calldata input)
        private
        view
        returns (Trade memory trade)
    {
        bytes32 buyHash = _checkedOrder(input.buy, input.buySignature, deadline, input.quantityWh);
        bytes32 sellHash = _checkedOrder(input.sell, input.sellSignature, deadline, input.quantityWh);
        Order calldata buy = input.buy;
        Order calldata sell = input.sell;
        if (
            !buy.isBuy || sell.isBuy || buy.slotStart != sell.slotStart || buy.slotEnd != sell.slotEnd
                || buy.participant == sell.participant
        ) revert OrdersDoNotMatch(buyHash, sellHash);
        bytes32 tradeId = tradeIdOf(roundId, buyHash, sellHash);
        if (_trades[tradeId] != 0) revert TradeExists(tradeId);
        // Votes count until the deadline, and from then on the buyer may reclaim: the
        // slot must end (delivery be over) early enough for validators to vote before.
        if (uint256(buy.slotEnd) + MIN_VOTING_WINDOW_S > deadline) {
            revert SettlementSlotAfterDeadline(tradeId, buy.slotEnd, deadline);
        }
        if (input.quantityWh == 0) revert ZeroAmount();
        if (
            input.priceMicroEurPerKwh < sell.limitMicroEurPerKwh
                || uint256(input.priceMicroEurPerKwh) + input.feeMicroEurPerKwh > buy.limitMicroEurPerKwh
                || input.feeMicroEurPerKwh > buy.maxFeeMicroEurPerKwh
        ) revert PriceOutsideLimits(tradeId);
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

    /// @dev The order's id, after checking its signature, expiry, nonce and that `moreWh`
    ///      still fits it.
    function _checkedOrder(Order calldata order, bytes calldata signature, uint64 deadline, uint64 moreWh)
        private
        view
        returns (bytes32 hash)
    {
        hash = orderHash(order);
        if (!_recovers(hash, signature, order.participant)) {
            revert InvalidOrderSignature(order.participant, hash);
        }
        // A round must end (deadline) before any of its orders expires.
        if (order.expiry < block.timestamp || order.expiry < deadline) revert OrderExpired(hash, order.expiry);
        if (order.slotStart >= order.slotEnd) revert OrdersDoNotMatch(hash, hash);
        OrderUse storage use = _orders[order.participant][order.nonce];
        if (use.orderHash != bytes24(0) && use.orderHash != bytes24(hash)) {
            revert NonceReused(order.participant, order.nonce);
        }
        if (uint256(use.filledWh) + moreWh > order.quantityWh) {
            revert OrderOverfilled(hash, use.filledWh, order.quantityWh);
        }
    }

    function _fill(Order calldata order, bytes32 hash, uint64 moreWh) private {
        uint64 filled = _orders[order.participant][order.nonce].filledWh;
        // Checked in _checkedOrder: filledWh + moreWh <= quantityWh < 2^64.
        _orders[order.participant][order.nonce] = OrderUse({orderHash: bytes24(hash), filledWh: filled + moreWh});
    }

    function _recordWord(Trade memory trade, TradeState state) private pure returns (uint256) {
        return (uint256(keccak256(abi.encode(trade))) & ~uint256(3)) | uint256(state);
    }

    function _knownTrade(Trade calldata trade, bytes32 tradeId) private view returns (bool) {
        uint256 word = _trades[tradeId];
        return word != 0 && word & ~uint256(3) == uint256(keccak256(abi.encode(trade))) & ~uint256(3);
    }

    function _setState(bytes32 tradeId, TradeState state) private {
        _trades[tradeId] = (_trades[tradeId] & ~uint256(3)) | uint256(state);
    }

    // ---------------------------------------------------------------- internals: votes

    function _settleProblem(Trade calldata trade, bytes32 tradeId) private view returns (SkipReason) {
        if (!_knownTrade(trade, tradeId)) return SkipReason.UnknownTrade;
        Round storage round = _rounds[trade.roundId];
        if (round.status != RoundStatus.Sealed) return SkipReason.RoundNotSealed;
        if (tradeState(tradeId) != TradeState.Open) return SkipReason.TradeFinal;
        // Delivery is over only once the slot has ended (its meters' readings are final);
        // addTrades keeps slotEnd + MIN_VOTING_WINDOW_S <= deadline, so the two time
        // rules never overlap.
        if (block.timestamp < trade.slotEnd) return SkipReason.SlotNotEnded;
        if (block.timestamp > round.deadline) return SkipReason.AttestationClosed;
        return SkipReason.None;
    }

    /// @dev Check the votes' signatures (each its validator's, no validator twice) and
    ///      find the largest group of current validators' votes within the tolerance of
    ///      each other and its median (the lower one for an even group); of equally large
    ///      groups, the one with the lowest votes. Votes of validators not registered now
    ///      are left out. Independent of the order the votes come in.
    function _tally(bytes32 tradeId, uint64 quantityWh, SignedVote[] calldata votes)
        private
        view
        returns (bool valid, uint256 size, uint64 median)
    {
        uint256 n = votes.length;
        uint64[] memory values = new uint64[](n);
        uint256 m = 0;
        for (uint256 i; i < n; ++i) {
            SignedVote calldata vote = votes[i];
            if (!_signedBy(tradeId, vote)) return (false, 0, 0);
            for (uint256 k; k < i; ++k) {
                if (votes[k].validator == vote.validator) return (false, 0, 0);
            }
            // Only a current registration's vote counts (epochs start at 1).
            if (vote.epoch != 0 && validators.epochOf(vote.validator) == vote.epoch) {
                values[m++] = vote.deliveredWh;
            }
        }
        _sort(values, m);
        uint64 toleranceWh = _toleranceWh(quantityWh);
        // A window [i, j) of sorted values agrees when its spread is within the tolerance.
        uint256 bestStart = 0;
        uint256 j = 0;
        for (uint256 i; i < m; ++i) {
            if (j < i) j = i;
            while (j < m && values[j] - values[i] <= toleranceWh) ++j;
            if (j - i > size) (size, bestStart) = (j - i, i);
        }
        if (size > 0) median = values[bestStart + (size - 1) / 2];
        valid = true;
    }

    function _signedBy(bytes32 tradeId, SignedVote calldata vote) private view returns (bool) {
        return _recovers(attestationHash(tradeId, vote.deliveredWh, vote.epoch), vote.signature, vote.validator);
    }

    /// @dev Whether `signature` is `account`'s (never address 0) signature of `digest`;
    ///      ECDSA refuses malleated (high-s) signatures.
    function _recovers(bytes32 digest, bytes calldata signature, address account) private pure returns (bool) {
        (address signer, ECDSA.RecoverError failure, bytes32 detail) = ECDSA.tryRecover(digest, signature);
        return
            failure == ECDSA.RecoverError.NoError && detail == bytes32(0) && signer == account && signer != address(0);
    }

    function _firstInvalid(bytes32 tradeId, SignedVote[] calldata votes) private view returns (address) {
        for (uint256 i; i < votes.length; ++i) {
            if (!_signedBy(tradeId, votes[i])) return votes[i].validator;
            for (uint256 j; j < i; ++j) {
                if (votes[j].validator == votes[i].validator) return votes[i].validator;
            }
        }
        return address(0);
    }

    function _toleranceWh(uint64 quantityWh) private view returns (uint64) {
        uint64 tolerance = uint64(uint256(quantityWh) * tolerancePerMille / 1000);
        return tolerance == 0 ? 1 : tolerance;
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
        _setState(tradeId, TradeState.Settled);
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
        certificates.recordOutcome(trade.seller, trade.slotStart, trade.buyer, paidWh);
    }

    // ---------------------------------------------------------------- internals: reclaims

    function _reclaimProblem(Trade calldata trade, bytes32 tradeId) private view returns (SkipReason) {
        if (!_knownTrade(trade, tradeId)) return SkipReason.UnknownTrade;
        if (tradeState(tradeId) != TradeState.Open) return SkipReason.TradeFinal;
        if (block.timestamp <= _rounds[trade.roundId].deadline) return SkipReason.NotExpired;
        return SkipReason.None;
    }

    function _reclaim(Trade calldata trade, bytes32 tradeId) private {
        _setState(tradeId, TradeState.Reclaimed);
        uint256 lock = lockAmount(trade.quantityWh, trade.priceMicroEurPerKwh, trade.feeMicroEurPerKwh);
        _unlock(trade.buyer, lock);
        _credit(trade.buyer, lock);
        emit TradeReclaimed(tradeId, lock);
        certificates.recordOutcome(trade.seller, trade.slotStart, trade.buyer, 0);
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
