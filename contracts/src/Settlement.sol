// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {EnergyToken} from "./EnergyToken.sol";

/// @title Settlement
/// @notice Escrowed settlement of cleared P2P energy trades.
/// @dev Buyers prepay into escrow; the operator commits a clearing round as a Merkle root
///      of its trades plus the amount to lock per buyer (one transaction per round,
///      whatever its size); validators attest each trade's metered delivery; when a
///      quorum agrees within the round's tolerance the seller is paid for
///      min(quantity, verified) and the rest returns to the buyer. Without a quorum by
///      the deadline the buyer reclaims the locked amount.
///
///      Leaves are OpenZeppelin StandardMerkleTree leaves:
///      keccak256(bytes.concat(keccak256(abi.encode(roundId, tradeId, buyer, seller, slot,
///      quantityWh, priceMicroEurPerKwh, feeMicroEurPerKwh)))).
///
///      Conservation: the payment tokens this contract holds always equal the sum of all
///      free balances plus all locked amounts.
contract Settlement is AccessControl, Pausable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Commits clearing rounds.
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    /// @notice Attests metered delivery.
    bytes32 public constant VALIDATOR_ROLE = keccak256("VALIDATOR_ROLE");
    /// @notice Pauses and unpauses.
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");

    /// @notice One accepted trade, as in trades.csv (energy in Wh, prices in micro-EUR per kWh).
    struct Trade {
        uint64 roundId;
        uint64 tradeId;
        address buyer;
        address seller;
        uint64 slot;
        uint64 quantityWh;
        uint64 priceMicroEurPerKwh;
        uint64 feeMicroEurPerKwh;
    }

    /// @notice An amount to lock from a buyer's free balance when a round is committed.
    struct BuyerLock {
        address buyer;
        uint256 amount;
    }

    /// @notice What the operator commits for a round.
    /// @param roundId Unique round number.
    /// @param inputHash Hash of the round's inputs (order book, options), for audit.
    /// @param tradesRoot Merkle root of the round's trades (see the contract's leaf format).
    /// @param deadline Last timestamp at which attestations count.
    /// @param toleranceWh How far validators' delivered Wh may differ and still agree.
    /// @param quorum Agreeing validators needed to settle a trade.
    struct RoundParams {
        uint64 roundId;
        bytes32 inputHash;
        bytes32 tradesRoot;
        uint64 deadline;
        uint64 toleranceWh;
        uint8 quorum;
    }

    /// @notice A committed clearing round.
    struct Round {
        bytes32 inputHash;
        bytes32 tradesRoot;
        uint64 deadline;
        uint64 toleranceWh;
        uint8 quorum;
        bool committed;
    }

    /// @notice An account's escrow. Free and locked share one storage slot, so locking a
    ///         buyer at commit costs one slot write, not two (128 bits hold 3e32 EUR in
    ///         micro-EUR; amounts are range-checked where they enter).
    struct Account {
        uint128 free;
        uint128 locked;
    }

    /// @notice What happened to a trade.
    enum TradeState {
        Open,
        Settled,
        Reclaimed
    }

    IERC20 public immutable paymentToken;
    EnergyToken public immutable energyToken;
    /// @notice Receives the grid fees of settled trades.
    address public immutable feeRecipient;

    mapping(address account => Account) private _accounts;
    mapping(uint64 roundId => Round) private _rounds;
    /// @notice What is still locked for a buyer in a round: no trade pays out beyond it.
    mapping(uint64 roundId => mapping(address buyer => uint256 amount)) public roundLock;
    mapping(bytes32 leaf => TradeState) public tradeState;
    mapping(bytes32 leaf => uint64[] delivered) private _deliveries;
    mapping(bytes32 leaf => mapping(address validator => bool)) public hasAttested;

    /// @notice A zero amount or address where one is needed.
    error ZeroAmount();
    error ZeroAddress();
    /// @notice `account` has `available` free, less than `required`.
    error InsufficientBalance(address account, uint256 required, uint256 available);
    /// @notice A round would lock more from `buyer` than its free balance: the whole round is rejected.
    error InsufficientEscrow(address buyer, uint256 required, uint256 available);
    error RoundAlreadyCommitted(uint64 roundId);
    error UnknownRound(uint64 roundId);
    error InvalidRoundParameters();
    /// @notice The arrays of a batch differ in length.
    error LengthMismatch();
    /// @notice An amount does not fit the 128-bit balances.
    error AmountTooLarge(uint256 amount);
    /// @notice The trade is not in the round's Merkle tree.
    error InvalidProof(uint64 roundId, uint64 tradeId);
    /// @notice The trade was already settled or reclaimed.
    error TradeAlreadyFinal(uint64 roundId, uint64 tradeId);
    error AlreadyAttested(uint64 roundId, uint64 tradeId, address validator);
    error AttestationClosed(uint64 roundId, uint64 deadline);
    error DeadlineNotPassed(uint64 roundId, uint64 deadline);
    /// @notice Settling or reclaiming would pay out more than is locked for the buyer in the round.
    error LockExceeded(uint64 roundId, address buyer, uint256 required, uint256 locked);

    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event RoundCommitted(
        uint64 indexed roundId, bytes32 inputHash, bytes32 tradesRoot, uint64 deadline, uint256 totalLocked
    );
    event Attested(
        uint64 indexed roundId, uint64 indexed tradeId, address indexed validator, uint64 sentWh, uint64 receivedWh
    );
    event TradeSettled(
        uint64 indexed roundId,
        uint64 indexed tradeId,
        uint64 verifiedWh,
        uint256 paidToSeller,
        uint256 fee,
        uint256 refundedToBuyer
    );
    event TradeReclaimed(uint64 indexed roundId, uint64 indexed tradeId, uint256 refundedToBuyer);
    /// @notice What was still locked for `buyer` in a round after its deadline went back.
    event LockReleased(uint64 indexed roundId, address indexed buyer, uint256 amount);
    event DeadlineExtended(uint64 indexed roundId, uint64 deadline);
    /// @notice A round locked `amount` of `buyer`'s free balance.
    event BuyerLocked(uint64 indexed roundId, address indexed buyer, uint256 amount);

    /// @param admin Receives every role; grant OPERATOR/VALIDATOR roles from it.
    /// @param payment The ERC-20 buyers prepay in.
    /// @param energy The ERC-1155 of verified energy; this contract needs its DELIVERER_ROLE.
    /// @param fees Receives grid fees.
    constructor(address admin, IERC20 payment, EnergyToken energy, address fees) {
        if (
            admin == address(0) || address(payment) == address(0) || address(energy) == address(0) || fees == address(0)
        ) {
            revert ZeroAddress();
        }
        paymentToken = payment;
        energyToken = energy;
        feeRecipient = fees;
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

    /// @notice Top up many accounts' free balances from the caller's tokens in one
    ///         transaction (a retailer or community funding its members' prepaid
    ///         accounts). Credited balances belong to the accounts, not the caller.
    /// @param accounts Accounts to credit.
    /// @param amounts Amount for each account; the caller pays their sum.
    function depositFor(address[] calldata accounts, uint256[] calldata amounts) external whenNotPaused nonReentrant {
        uint256 n = accounts.length;
        if (amounts.length != n) revert LengthMismatch();
        uint256 total = 0;
        for (uint256 i; i < n; ++i) {
            address account = accounts[i];
            uint256 amount = amounts[i];
            if (account == address(0)) revert ZeroAddress();
            if (amount == 0) revert ZeroAmount();
            _credit(account, amount);
            total += amount;
            emit Deposited(account, amount);
        }
        paymentToken.safeTransferFrom(msg.sender, address(this), total);
    }

    /// @notice Withdraw `amount` of the caller's free (unlocked) balance; works while paused.
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Account storage account = _accounts[msg.sender];
        uint256 available = account.free;
        if (available < amount) revert InsufficientBalance(msg.sender, amount, available);
        account.free = uint128(available - amount);
        emit Withdrawn(msg.sender, amount);
        paymentToken.safeTransfer(msg.sender, amount);
    }

    /// @notice Balance `account` may withdraw or have locked.
    function freeBalance(address account) external view returns (uint256) {
        return _accounts[account].free;
    }

    /// @notice Balance of `account` locked for committed trades not yet settled or reclaimed.
    function lockedBalance(address account) external view returns (uint256) {
        return _accounts[account].locked;
    }

    /// @notice Free and locked balances of many accounts (one call for a client's report).
    function balancesOf(address[] calldata accounts)
        external
        view
        returns (uint256[] memory free, uint256[] memory locked)
    {
        free = new uint256[](accounts.length);
        locked = new uint256[](accounts.length);
        for (uint256 i; i < accounts.length; ++i) {
            Account storage account = _accounts[accounts[i]];
            free[i] = account.free;
            locked[i] = account.locked;
        }
    }

    /// @notice {tradeState} of many leaves.
    function tradeStates(bytes32[] calldata leaves) external view returns (TradeState[] memory states) {
        states = new TradeState[](leaves.length);
        for (uint256 i; i < leaves.length; ++i) {
            states[i] = tradeState[leaves[i]];
        }
    }

    // ---------------------------------------------------------------- rounds

    /// @notice Commit a clearing round and lock each buyer's prepayment.
    /// @param params The round (see {RoundParams}).
    /// @param locks Per buyer, the sum over its trades of lockAmount(trade). A buyer whose
    ///        free balance falls short rejects the whole round ({InsufficientEscrow}).
    function commitRound(RoundParams calldata params, BuyerLock[] calldata locks)
        external
        onlyRole(OPERATOR_ROLE)
        whenNotPaused
    {
        uint64 roundId = params.roundId;
        if (_rounds[roundId].committed) revert RoundAlreadyCommitted(roundId);
        if (params.quorum == 0 || params.deadline <= block.timestamp || params.tradesRoot == bytes32(0)) {
            revert InvalidRoundParameters();
        }
        _rounds[roundId] =
            Round(params.inputHash, params.tradesRoot, params.deadline, params.toleranceWh, params.quorum, true);
        uint256 total = _lock(roundId, locks);
        emit RoundCommitted(roundId, params.inputHash, params.tradesRoot, params.deadline, total);
    }

    /// @notice The committed round `roundId`.
    function rounds(uint64 roundId) external view returns (Round memory) {
        return _rounds[roundId];
    }

    /// @notice What a trade locks from its buyer: quantity x (price + fee), rounded up.
    function lockAmount(Trade calldata trade) public pure returns (uint256) {
        return
            _ceilDiv(uint256(trade.quantityWh) * (uint256(trade.priceMicroEurPerKwh) + trade.feeMicroEurPerKwh), 1000);
    }

    /// @notice The Merkle leaf of a trade.
    function leafOf(Trade calldata trade) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(trade))));
    }

    // ---------------------------------------------------------------- delivery

    /// @notice Attest what the seller's meter sent and the buyer's meter received for a trade.
    /// @dev Settles the trade as soon as `quorum` attestations agree within the tolerance;
    ///      the verified energy is the least of the agreeing ones.
    function attest(Trade calldata trade, bytes32[] calldata proof, uint64 sentWh, uint64 receivedWh)
        external
        onlyRole(VALIDATOR_ROLE)
        whenNotPaused
        nonReentrant
    {
        Round storage round = _rounds[trade.roundId];
        _attest(round, trade, _openTrade(round, trade, proof), sentWh, receivedWh);
    }

    /// @notice {attest} for many trades in one transaction; trades already settled or
    ///         reclaimed (e.g. by other validators' quorum), or already attested by the
    ///         caller, are skipped, not reverted.
    function attestBatch(
        Trade[] calldata trades,
        bytes32[][] calldata proofs,
        uint64[] calldata sentWh,
        uint64[] calldata receivedWh
    ) external onlyRole(VALIDATOR_ROLE) whenNotPaused nonReentrant {
        uint256 n = trades.length;
        if (proofs.length != n || sentWh.length != n || receivedWh.length != n) revert LengthMismatch();
        for (uint256 i; i < n; ++i) {
            Trade calldata trade = trades[i];
            Round storage round = _rounds[trade.roundId];
            bytes32 leaf = _verifiedLeaf(round, trade, proofs[i]);
            // Skipped, not reverted, so one batch can be resent after a partial failure.
            if (tradeState[leaf] != TradeState.Open || hasAttested[leaf][msg.sender]) continue;
            _attest(round, trade, leaf, sentWh[i], receivedWh[i]);
        }
    }

    /// @notice After the deadline, return an unsettled trade's locked amount to its buyer.
    /// @dev Anyone may call it: the money can only go to the buyer. Not while paused, since
    ///      attestations cannot arrive then (the admin extends the deadline instead).
    function reclaim(Trade calldata trade, bytes32[] calldata proof) external whenNotPaused nonReentrant {
        Round storage round = _rounds[trade.roundId];
        bytes32 leaf = _openTrade(round, trade, proof);
        if (block.timestamp <= round.deadline) revert DeadlineNotPassed(trade.roundId, round.deadline);
        tradeState[leaf] = TradeState.Reclaimed;
        uint256 amount = lockAmount(trade);
        _release(trade, amount);
        _credit(trade.buyer, amount);
        emit TradeReclaimed(trade.roundId, trade.tradeId, amount);
    }

    /// @notice After the deadline, return everything still locked for `buyer` in a round:
    ///         what a round locked beyond its trades, and the locks of trades that never
    ///         settled (those can then no longer be reclaimed one by one). Anyone may call
    ///         it; the money goes to the buyer.
    function releaseExpired(uint64 roundId, address buyer) external whenNotPaused nonReentrant {
        Round storage round = _rounds[roundId];
        if (!round.committed) revert UnknownRound(roundId);
        if (block.timestamp <= round.deadline) revert DeadlineNotPassed(roundId, round.deadline);
        uint256 amount = roundLock[roundId][buyer];
        if (amount == 0) revert ZeroAmount();
        roundLock[roundId][buyer] = 0;
        // amount <= locked < 2^128.
        _accounts[buyer].locked -= uint128(amount);
        _credit(buyer, amount);
        emit LockReleased(roundId, buyer, amount);
    }

    /// @notice Move a round's deadline later, e.g. after a pause kept validators out.
    function extendDeadline(uint64 roundId, uint64 newDeadline) external onlyRole(DEFAULT_ADMIN_ROLE) {
        Round storage round = _rounds[roundId];
        if (!round.committed) revert UnknownRound(roundId);
        if (newDeadline <= round.deadline) revert InvalidRoundParameters();
        round.deadline = newDeadline;
        emit DeadlineExtended(roundId, newDeadline);
    }

    /// @notice Pause deposits, commits, attestations and reclaims (withdrawals of free
    ///         balance stay open).
    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    /// @notice Undo {pause}.
    function unpause() external onlyRole(PAUSER_ROLE) {
        _unpause();
    }

    // ---------------------------------------------------------------- internals

    function _verifiedLeaf(Round storage round, Trade calldata trade, bytes32[] calldata proof)
        private
        view
        returns (bytes32 leaf)
    {
        if (!round.committed) revert UnknownRound(trade.roundId);
        leaf = leafOf(trade);
        if (!MerkleProof.verifyCalldata(proof, round.tradesRoot, leaf)) {
            revert InvalidProof(trade.roundId, trade.tradeId);
        }
    }

    function _openTrade(Round storage round, Trade calldata trade, bytes32[] calldata proof)
        private
        view
        returns (bytes32 leaf)
    {
        leaf = _verifiedLeaf(round, trade, proof);
        if (tradeState[leaf] != TradeState.Open) revert TradeAlreadyFinal(trade.roundId, trade.tradeId);
    }

    function _attest(Round storage round, Trade calldata trade, bytes32 leaf, uint64 sentWh, uint64 receivedWh)
        private
    {
        if (block.timestamp > round.deadline) revert AttestationClosed(trade.roundId, round.deadline);
        if (hasAttested[leaf][msg.sender]) revert AlreadyAttested(trade.roundId, trade.tradeId, msg.sender);
        hasAttested[leaf][msg.sender] = true;
        emit Attested(trade.roundId, trade.tradeId, msg.sender, sentWh, receivedWh);

        uint64 delivered = sentWh < receivedWh ? sentWh : receivedWh;
        _deliveries[leaf].push(delivered);
        (uint256 agreeing, uint64 least) = _largestAgreement(_deliveries[leaf], round.toleranceWh);
        if (agreeing >= round.quorum) _settle(trade, leaf, least);
    }

    /// @dev The largest group of attested deliveries whose spread (max - min) is within
    ///      the tolerance, and its least value; among equally large groups the lowest.
    ///      Every pair in the group agrees, and the answer does not depend on the order
    ///      attestations arrived in. O(n^2) in the validators who attested, a handful.
    function _largestAgreement(uint64[] storage deliveries, uint64 toleranceWh)
        private
        view
        returns (uint256 size, uint64 least)
    {
        uint256 n = deliveries.length;
        for (uint256 i; i < n; ++i) {
            uint64 low = deliveries[i];
            uint256 count = 0;
            for (uint256 j; j < n; ++j) {
                uint64 other = deliveries[j];
                if (other >= low && other - low <= toleranceWh) ++count;
            }
            if (count > size || (count == size && low < least)) (size, least) = (count, low);
        }
    }

    function _lock(uint64 roundId, BuyerLock[] calldata locks) private returns (uint256 total) {
        for (uint256 i; i < locks.length; ++i) {
            address buyer = locks[i].buyer;
            uint256 amount = locks[i].amount;
            Account storage account = _accounts[buyer];
            uint256 available = account.free;
            if (available < amount) revert InsufficientEscrow(buyer, amount, available);
            // amount <= free < 2^128, and free + locked only moves between the halves.
            account.free = uint128(available - amount);
            account.locked += uint128(amount);
            roundLock[roundId][buyer] += amount;
            total += amount;
            emit BuyerLocked(roundId, buyer, amount);
        }
    }

    function _settle(Trade calldata trade, bytes32 leaf, uint64 verifiedWh) private {
        tradeState[leaf] = TradeState.Settled;
        uint64 paidWh = verifiedWh < trade.quantityWh ? verifiedWh : trade.quantityWh;
        uint256 amount = lockAmount(trade);
        uint256 payment = uint256(paidWh) * trade.priceMicroEurPerKwh / 1000;
        uint256 fee = uint256(paidWh) * trade.feeMicroEurPerKwh / 1000;
        // Rounded down against the lock's rounding up: payment + fee <= amount.
        uint256 refund = amount - payment - fee;
        _release(trade, amount);
        _credit(trade.seller, payment);
        _credit(feeRecipient, fee);
        _credit(trade.buyer, refund);
        emit TradeSettled(trade.roundId, trade.tradeId, verifiedWh, payment, fee, refund);
        if (paidWh > 0) energyToken.deliver(trade.seller, trade.buyer, trade.slot, paidWh);
    }

    function _release(Trade calldata trade, uint256 amount) private {
        uint256 left = roundLock[trade.roundId][trade.buyer];
        if (left < amount) revert LockExceeded(trade.roundId, trade.buyer, amount, left);
        roundLock[trade.roundId][trade.buyer] = left - amount;
        // amount <= roundLock <= locked < 2^128.
        _accounts[trade.buyer].locked -= uint128(amount);
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
