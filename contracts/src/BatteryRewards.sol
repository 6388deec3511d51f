// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ValidatorRegistry} from "./ValidatorRegistry.sol";

/// @title BatteryRewards
/// @notice Battery reward agreements: a sponsor funds an agreement for one battery in the
///         payment token; per period and condition met, a fixed amount is released to the
///         participants by their shares, credited to each one's owed balance, which they
///         withdraw (pull payments); after expiry the sponsor reclaims what is left, credited
///         to its own owed balance and withdrawn the same way.
/// @dev The conditions are evaluated here, on chain, against a period's telemetry summary
///      that strictly more than two thirds of the settlement's current validators
///      (`ValidatorRegistry.quorum()`) signed under their current epoch (EIP-712). A
///      period is attested once: its first quorum summary is final, so each (period,
///      condition) pays at most once. A release moves no tokens: it credits the
///      participants, so no participant the token refuses (blacklisted, or a receiver
///      that reverts) can block another's release; each withdraws its own credit
///      ({withdraw}, {claim}). Nothing off chain is trusted: Python computes the same
///      verdicts only to report them.
contract BatteryRewards is EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Conditions, in the order of the amounts and of the bits of a mask.
    uint8 public constant SOC_WINDOW = 0;
    uint8 public constant MAX_DOD = 1;
    uint8 public constant MAX_C_RATE = 2;
    uint8 public constant TEMPERATURE_BAND = 3;
    uint8 public constant MAX_CYCLES_PER_DAY = 4;
    uint8 public constant MIN_SOH = 5;
    uint8 public constant CONDITIONS = 6;
    /// @notice Shares are in basis points and add up to this.
    uint256 public constant TOTAL_BPS = 10_000;
    /// @notice Milli-cycles per day x seconds of a half cycle 1 bps deep: a half cycle is
    ///         half an equivalent full cycle, so 1 bps of it is 1000 x 86,400 / 20,000.
    uint256 public constant HALF_CYCLE_MILLI_SECONDS_PER_BPS = 4320;
    /// @notice At most this many participants per agreement (bounds the release loop).
    uint256 public constant MAX_PARTICIPANTS = 16;
    /// @notice At most this many periods per agreement.
    uint32 public constant MAX_PERIODS = 3660;

    /// @notice A summary is bound to its agreement, battery and schedule (and by the
    ///         domain to the chain and this contract): a quorum's word on one battery's
    ///         period is not one on another's, even under an agreement id that a reorg
    ///         gave to another agreement.
    bytes32 public constant SUMMARY_TYPEHASH = keccak256(
        "BatterySummary(uint256 agreementId,bytes32 batteryId,uint64 periodStart,uint32 periodSeconds,"
        "uint32 period,uint16 socMinBps,uint16 socMaxBps,uint16 maxDodBps,"
        "uint32 maxCRateMilli,int32 tempMinDeciC,int32 tempMaxDeciC,uint32 cyclesPerDayMilli,uint16 sohBps,"
        "uint16 coverageBps,uint32 maxGapSeconds,uint32 epoch)"
    );

    /// @notice The thresholds of an agreement (same units as {Summary}).
    /// @param socMinBps, socMaxBps The state-of-charge window the battery must stay in.
    /// @param maxDodBps Deepest allowed cycle (rainflow range of the SoC).
    /// @param maxCRateMilli Highest allowed |P| / capacity, in thousandths of 1/h.
    /// @param tempMinDeciC, tempMaxDeciC The temperature band, in tenths of a degree C.
    /// @param maxCyclesPerDayMilli Equivalent full cycles per day allowed, in thousandths.
    /// @param minSohBps Lowest allowed state of health (a summary without SoH data: 0).
    /// @param minCoverageBps Telemetry coverage a period needs before anything is released:
    ///        the share of the expected samples present, in basis points.
    /// @param maxGapSeconds Longest allowed stretch without a sample (period edges included).
    struct Conditions {
        uint16 socMinBps;
        uint16 socMaxBps;
        uint16 maxDodBps;
        uint32 maxCRateMilli;
        int32 tempMinDeciC;
        int32 tempMaxDeciC;
        uint32 maxCyclesPerDayMilli;
        uint16 minSohBps;
        uint16 minCoverageBps;
        uint32 maxGapSeconds;
    }

    /// @notice What validators attest of one period's telemetry; `coverageBps` and
    ///         `maxGapSeconds` say how well the samples cover the period.
    struct Summary {
        uint16 socMinBps;
        uint16 socMaxBps;
        uint16 maxDodBps;
        uint32 maxCRateMilli;
        int32 tempMinDeciC;
        int32 tempMaxDeciC;
        uint32 cyclesPerDayMilli;
        uint16 sohBps;
        uint16 coverageBps;
        uint32 maxGapSeconds;
    }

    /// @notice A validator's signature of a summary under its registration `epoch`.
    struct SignedSummary {
        address validator;
        uint32 epoch;
        bytes signature;
    }

    /// @notice The terms of an agreement as its sponsor creates it.
    /// @param amounts Released per period for each condition met (0: not agreed).
    struct Terms {
        bytes32 batteryId;
        uint64 periodStart;
        uint32 periodSeconds;
        uint32 periods;
        uint64 expiry;
        Conditions conditions;
        uint256[6] amounts;
        address[] participants;
        uint16[] sharesBps;
    }

    struct Agreement {
        address sponsor;
        bytes32 batteryId;
        uint64 periodStart;
        uint32 periodSeconds;
        uint32 periods;
        uint64 expiry;
        bool reclaimed;
        Conditions conditions;
        uint256[6] amounts;
        address[] participants;
        uint16[] sharesBps;
        uint256 funded;
        uint256 released;
    }

    /// @notice The payment token (micro-EUR).
    IERC20 public immutable token;
    /// @notice The settlement's validators.
    ValidatorRegistry public immutable validators;
    /// @notice Agreements created so far (ids 1..count).
    uint256 public agreementCount;

    mapping(uint256 id => Agreement) private _agreements;
    /// @dev Bit c: condition c released; bit 7: the period is attested.
    mapping(uint256 id => mapping(uint32 period => uint8 mask)) private _periodMask;
    /// @dev Released (or reclaimed) to an account and not withdrawn yet, over all agreements.
    mapping(address account => uint256 amount) private _owed;

    error BatteryRewardsBadTerms(string reason);
    error BatteryRewardsUnknownAgreement(uint256 id);
    error BatteryRewardsBadPeriod(uint256 id, uint32 period);
    error BatteryRewardsPeriodNotOver(uint256 id, uint32 period, uint64 endsAt);
    error BatteryRewardsExpired(uint256 id, uint64 expiry);
    error BatteryRewardsNotExpired(uint256 id, uint64 expiry);
    error BatteryRewardsPeriodAttested(uint256 id, uint32 period);
    error BatteryRewardsInvalidSignature(address validator);
    error BatteryRewardsNoQuorum(uint256 agreeing, uint256 quorum);
    error BatteryRewardsNotSponsor(address caller);
    error BatteryRewardsReclaimed(uint256 id);
    error BatteryRewardsInsufficientCoverage(uint256 id, uint32 period, uint16 coverageBps, uint32 maxGapSeconds);
    error BatteryRewardsInconsistentSummary(string reason);
    error BatteryRewardsFundingMismatch(uint256 expected, uint256 received);
    error BatteryRewardsNothingOwed(address account);
    error BatteryRewardsBadRecipient(address to);

    event AgreementCreated(uint256 indexed id, address indexed sponsor, bytes32 indexed batteryId, uint256 funded);
    event PeriodAttested(uint256 indexed id, uint32 indexed period, uint8 metMask, uint256 released);
    event ConditionReleased(uint256 indexed id, uint32 indexed period, uint8 indexed condition, uint256 amount);
    event Reclaimed(uint256 indexed id, address indexed sponsor, uint256 amount);
    event Credited(uint256 indexed id, address indexed participant, uint256 amount);
    event Withdrawn(address indexed account, address indexed to, uint256 amount);

    /// @param token_ The payment token agreements are funded in.
    /// @param registry The settlement's validator registry.
    constructor(IERC20 token_, ValidatorRegistry registry) EIP712("gridmatch BatteryRewards", "1") {
        if (address(token_) == address(0) || address(registry) == address(0)) {
            revert BatteryRewardsBadTerms("zero address");
        }
        token = token_;
        validators = registry;
    }

    // ---------------------------------------------------------------- agreements

    /// @notice Create and fund an agreement: pulls periods x sum(amounts) from the caller,
    ///         who becomes its sponsor.
    /// @dev Reverts `BatteryRewardsFundingMismatch` unless exactly that arrived (a
    ///      fee-on-transfer or otherwise short token would leave releases the contract
    ///      cannot pay but from other agreements' funds).
    /// @return id The new agreement's id.
    function create(Terms calldata terms) external nonReentrant returns (uint256 id) {
        _checkTerms(terms);
        uint256 perPeriod = 0;
        for (uint256 c; c < CONDITIONS; ++c) {
            perPeriod += terms.amounts[c];
        }
        // The split multiplies a period's amount by a share in basis points: it must fit.
        if (perPeriod > type(uint256).max / TOTAL_BPS) revert BatteryRewardsBadTerms("amounts too large");
        uint256 funded = perPeriod * terms.periods;
        if (funded == 0) revert BatteryRewardsBadTerms("nothing to fund");
        id = ++agreementCount;
        _agreements[id].sponsor = msg.sender;
        Agreement storage a = _agreements[id];
        a.batteryId = terms.batteryId;
        a.periodStart = terms.periodStart;
        a.periodSeconds = terms.periodSeconds;
        a.periods = terms.periods;
        a.expiry = terms.expiry;
        a.conditions = terms.conditions;
        a.amounts = terms.amounts;
        a.participants = terms.participants;
        a.sharesBps = terms.sharesBps;
        a.funded = funded;
        emit AgreementCreated(id, msg.sender, terms.batteryId, funded);
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), funded);
        uint256 afterwards = token.balanceOf(address(this));
        uint256 received = afterwards > before ? afterwards - before : 0;
        if (received != funded) revert BatteryRewardsFundingMismatch(funded, received);
    }

    /// @notice Release a period's rewards with its validators' signed summary (anyone may
    ///         submit it): each agreed condition the summary meets pays its amount, split by
    ///         the shares (the last participant gets the rounding remainder) and credited
    ///         to the participants' owed balances; no tokens move.
    /// @dev Reverts on an unknown agreement or period, a period not over yet, after expiry,
    ///      on a period already attested, an invalid or duplicate signature, no quorum, or a
    ///      summary whose telemetry covers the period less than the agreement asks, or one
    ///      no telemetry can give ({checkSummary}); the period then stays open: a summary of
    ///      backfilled (or correctly summarised) telemetry may still release it.
    function release(uint256 id, uint32 period, Summary calldata summary, SignedSummary[] calldata signatures)
        external
        nonReentrant
        returns (uint256 amount)
    {
        Agreement storage a = _agreement(id);
        if (period >= a.periods) revert BatteryRewardsBadPeriod(id, period);
        uint64 endsAt = a.periodStart + uint64(period + 1) * a.periodSeconds;
        // Timestamps: a period closes and an agreement expires at whole seconds; a
        // validator's few seconds of drift do not matter at these scales.
        if (block.timestamp < endsAt) revert BatteryRewardsPeriodNotOver(id, period, endsAt);
        if (block.timestamp > a.expiry) revert BatteryRewardsExpired(id, a.expiry);
        if (_periodMask[id][period] != 0) revert BatteryRewardsPeriodAttested(id, period);
        _checkQuorum(id, period, summary, signatures);
        // Checked after the quorum: even the validators' own word cannot release a period
        // the telemetry does not show.
        if (summary.coverageBps < a.conditions.minCoverageBps || summary.maxGapSeconds > a.conditions.maxGapSeconds) {
            revert BatteryRewardsInsufficientCoverage(id, period, summary.coverageBps, summary.maxGapSeconds);
        }
        checkSummary(summary, a.periodSeconds);
        uint8 met = metMask(a.conditions, summary);
        uint8 mask = 0x80;
        for (uint8 c; c < CONDITIONS; ++c) {
            if (met & (1 << c) != 0 && a.amounts[c] != 0) {
                mask |= uint8(1 << c);
                amount += a.amounts[c];
            }
        }
        _periodMask[id][period] = mask;
        a.released += amount;
        emit PeriodAttested(id, period, met, amount);
        for (uint8 c; c < CONDITIONS; ++c) {
            if (mask & (1 << c) != 0) emit ConditionReleased(id, period, c, a.amounts[c]);
        }
        if (amount != 0) _credit(id, a, amount);
    }

    /// @notice Withdraw everything released (or reclaimed) to the caller, over all its
    ///         agreements, to `to`: an account whose own address the token refuses sends
    ///         it elsewhere.
    /// @return amount What was withdrawn.
    function withdraw(address to) external nonReentrant returns (uint256 amount) {
        return _withdraw(msg.sender, to);
    }

    /// @notice Send `account` everything released to it (anyone may call; the tokens go
    ///         to `account` only).
    /// @return amount What was sent.
    function claim(address account) external nonReentrant returns (uint256 amount) {
        return _withdraw(account, account);
    }

    /// @notice After expiry, the sponsor takes back what was not released: it is credited
    ///         to the sponsor's owed balance, which the sponsor withdraws like a
    ///         participant ({withdraw} to any address, or anyone's {claim} to it).
    /// @dev Pull, not push. A reclaim that sent the tokens to the sponsor could only ever
    ///      send them to the sponsor's own address: a sponsor the token refuses
    ///      (blacklisted or frozen by a stablecoin's issuer, after funding) would see every
    ///      reclaim revert and the unreleased funds locked in this contract for good, with
    ///      no other way out. Nobody else was blocked (the reclaim is the sponsor's alone,
    ///      after every release), but money was locked; credited, it leaves through
    ///      {withdraw} to an address the token accepts. No token is called here.
    /// @return amount What was credited to the sponsor (funded - released).
    function reclaim(uint256 id) external nonReentrant returns (uint256 amount) {
        Agreement storage a = _agreement(id);
        if (msg.sender != a.sponsor) revert BatteryRewardsNotSponsor(msg.sender);
        if (block.timestamp <= a.expiry) revert BatteryRewardsNotExpired(id, a.expiry);
        if (a.reclaimed) revert BatteryRewardsReclaimed(id);
        a.reclaimed = true;
        amount = a.funded - a.released;
        if (amount != 0) _owed[msg.sender] += amount;
        emit Reclaimed(id, msg.sender, amount);
    }

    // ---------------------------------------------------------------- views

    /// @notice The EIP-712 digest a validator registered under `epoch` signs for a summary
    ///         of agreement `id`'s `period` (with the agreement's battery and schedule;
    ///         zeros for an id not created yet, which {release} refuses anyway).
    function summaryHash(uint256 id, uint32 period, Summary calldata summary, uint32 epoch)
        public
        view
        returns (bytes32)
    {
        Agreement storage a = _agreements[id];
        return _hashTypedDataV4(
            keccak256(
                abi.encode(SUMMARY_TYPEHASH, id, a.batteryId, a.periodStart, a.periodSeconds, period, summary, epoch)
            )
        );
    }

    /// @notice Reverts `BatteryRewardsInconsistentSummary` if no series of samples has
    ///         this summary: SoC, SoH and coverage outside 0-10,000 bps, the lowest SoC or
    ///         temperature above the highest, a deepest cycle that is not the SoC range,
    ///         or fewer cycles in a period of `periodSeconds` than that deepest cycle is.
    /// @dev A quorum attests the telemetry, but a summary that contradicts itself shows a
    ///      faulty or colluding quorum, and could meet conditions its own numbers rule out
    ///      (a shallow DoD with a wide SoC range meeting MAX_DOD, no cycles with a deep one
    ///      meeting MAX_CYCLES_PER_DAY). The deepest rainflow cycle of a series always
    ///      spans its lowest to its highest SoC, so the DoD is the range, within 1 bps
    ///      either way: the three are rounded each on its own (minimum down, maximum and
    ///      depth up). That cycle is at least a half cycle, so the period's equivalent full
    ///      cycles are at least half its depth (rounded up, so 1 bps of slack again).
    function checkSummary(Summary calldata summary, uint32 periodSeconds) public pure {
        if (summary.socMinBps > summary.socMaxBps || summary.socMaxBps > TOTAL_BPS) {
            revert BatteryRewardsInconsistentSummary("soc range");
        }
        uint256 rangeBps = uint256(summary.socMaxBps) - summary.socMinBps;
        if (summary.maxDodBps > rangeBps + 1 || uint256(summary.maxDodBps) + 1 < rangeBps) {
            revert BatteryRewardsInconsistentSummary("depth of discharge is not the soc range");
        }
        if (
            uint256(summary.cyclesPerDayMilli) * periodSeconds + HALF_CYCLE_MILLI_SECONDS_PER_BPS
                < uint256(summary.maxDodBps) * HALF_CYCLE_MILLI_SECONDS_PER_BPS
        ) revert BatteryRewardsInconsistentSummary("cycles below the deepest cycle");
        if (summary.tempMinDeciC > summary.tempMaxDeciC) revert BatteryRewardsInconsistentSummary("temperature range");
        if (summary.sohBps > TOTAL_BPS) revert BatteryRewardsInconsistentSummary("state of health");
        if (summary.coverageBps > TOTAL_BPS) revert BatteryRewardsInconsistentSummary("coverage");
    }

    /// @notice Bits of the conditions `summary` meets under `conditions` (agreed or not).
    function metMask(Conditions memory conditions, Summary calldata summary) public pure returns (uint8 mask) {
        if (summary.socMinBps >= conditions.socMinBps && summary.socMaxBps <= conditions.socMaxBps) {
            mask |= uint8(1 << SOC_WINDOW);
        }
        if (summary.maxDodBps <= conditions.maxDodBps) mask |= uint8(1 << MAX_DOD);
        if (summary.maxCRateMilli <= conditions.maxCRateMilli) mask |= uint8(1 << MAX_C_RATE);
        if (summary.tempMinDeciC >= conditions.tempMinDeciC && summary.tempMaxDeciC <= conditions.tempMaxDeciC) {
            mask |= uint8(1 << TEMPERATURE_BAND);
        }
        if (summary.cyclesPerDayMilli <= conditions.maxCyclesPerDayMilli) mask |= uint8(1 << MAX_CYCLES_PER_DAY);
        if (summary.sohBps >= conditions.minSohBps && summary.sohBps != 0) mask |= uint8(1 << MIN_SOH);
    }

    /// @notice Bits of the conditions released for `period` (bit 7: the period is attested).
    function periodMask(uint256 id, uint32 period) external view returns (uint8) {
        return _periodMask[id][period];
    }

    /// @notice Released (or, to a sponsor, reclaimed) to `account` and not withdrawn yet
    ///         (over all agreements).
    function owedOf(address account) external view returns (uint256) {
        return _owed[account];
    }

    /// @notice Money of an agreement: funded, released (credited to its participants,
    ///         withdrawn or not), still held for its periods, reclaimed.
    function balancesOf(uint256 id)
        external
        view
        returns (uint256 funded, uint256 released, uint256 held, uint256 reclaimed)
    {
        Agreement storage a = _agreement(id);
        funded = a.funded;
        released = a.released;
        reclaimed = a.reclaimed ? funded - released : 0;
        held = funded - released - reclaimed;
    }

    /// @notice An agreement's sponsor, battery, schedule and reclaim flag.
    function agreementOf(uint256 id)
        external
        view
        returns (
            address sponsor,
            bytes32 batteryId,
            uint64 periodStart,
            uint32 periodSeconds,
            uint32 periods,
            uint64 expiry
        )
    {
        Agreement storage a = _agreement(id);
        return (a.sponsor, a.batteryId, a.periodStart, a.periodSeconds, a.periods, a.expiry);
    }

    // ---------------------------------------------------------------- internals

    function _agreement(uint256 id) private view returns (Agreement storage a) {
        a = _agreements[id];
        if (a.sponsor == address(0)) revert BatteryRewardsUnknownAgreement(id);
    }

    function _checkTerms(Terms calldata terms) private view {
        if (terms.periodSeconds == 0) revert BatteryRewardsBadTerms("period length 0");
        if (terms.periods == 0 || terms.periods > MAX_PERIODS) revert BatteryRewardsBadTerms("periods");
        uint256 lastEnd = uint256(terms.periodStart) + uint256(terms.periods) * terms.periodSeconds;
        if (terms.expiry < lastEnd || terms.expiry < block.timestamp) {
            revert BatteryRewardsBadTerms("expiry before the last period ends");
        }
        // Validators summarise a period after it ends: the last one gets a period's
        // length to be released in, or the sponsor could reclaim it unreleasable.
        if (terms.expiry < lastEnd + terms.periodSeconds) {
            revert BatteryRewardsBadTerms("no release window after the last period");
        }
        Conditions calldata c = terms.conditions;
        if (c.socMinBps > c.socMaxBps || c.socMaxBps > TOTAL_BPS) revert BatteryRewardsBadTerms("soc window");
        if (c.tempMinDeciC > c.tempMaxDeciC) revert BatteryRewardsBadTerms("temperature band");
        if (c.minCoverageBps > TOTAL_BPS || c.maxGapSeconds == 0) revert BatteryRewardsBadTerms("coverage");
        uint256 n = terms.participants.length;
        if (n == 0 || n > MAX_PARTICIPANTS || terms.sharesBps.length != n) {
            revert BatteryRewardsBadTerms("participants");
        }
        uint256 total = 0;
        for (uint256 i; i < n; ++i) {
            if (terms.participants[i] == address(0) || terms.sharesBps[i] == 0) {
                revert BatteryRewardsBadTerms("participant");
            }
            total += terms.sharesBps[i];
        }
        if (total != TOTAL_BPS) revert BatteryRewardsBadTerms("shares do not add up to 10000");
    }

    /// @dev Every signature valid and its validator's, no validator twice, and the
    ///      validators signing under their current epoch at least the quorum.
    function _checkQuorum(uint256 id, uint32 period, Summary calldata summary, SignedSummary[] calldata signatures)
        private
        view
    {
        uint256 agreeing = 0;
        for (uint256 i; i < signatures.length; ++i) {
            SignedSummary calldata s = signatures[i];
            bytes32 digest = summaryHash(id, period, summary, s.epoch);
            (address signer, ECDSA.RecoverError failure, bytes32 detail) = ECDSA.tryRecover(digest, s.signature);
            if (failure != ECDSA.RecoverError.NoError || detail != bytes32(0) || signer != s.validator) {
                revert BatteryRewardsInvalidSignature(s.validator);
            }
            for (uint256 k; k < i; ++k) {
                if (signatures[k].validator == s.validator) revert BatteryRewardsInvalidSignature(s.validator);
            }
            // Only a current registration's signature counts (epochs start at 1).
            if (s.epoch != 0 && validators.epochOf(s.validator) == s.epoch) ++agreeing;
        }
        uint256 quorum = validators.quorum();
        if (agreeing < quorum) revert BatteryRewardsNoQuorum(agreeing, quorum);
    }

    /// @dev Split `amount` by the shares, rounding down; the last participant gets the
    ///      rest. Credited, not sent: a release never calls the token.
    function _credit(uint256 id, Agreement storage a, uint256 amount) private {
        uint256 n = a.participants.length;
        uint256 credited = 0;
        for (uint256 i; i + 1 < n; ++i) {
            uint256 part = amount * a.sharesBps[i] / TOTAL_BPS;
            if (part == 0) continue;
            credited += part;
            _owed[a.participants[i]] += part;
            emit Credited(id, a.participants[i], part);
        }
        address last = a.participants[n - 1];
        _owed[last] += amount - credited;
        emit Credited(id, last, amount - credited);
    }

    /// @dev Pay `account`'s whole credit to `to` (checks, effects, then the transfer).
    function _withdraw(address account, address to) private returns (uint256 amount) {
        if (to == address(0) || to == address(this)) revert BatteryRewardsBadRecipient(to);
        amount = _owed[account];
        if (amount == 0) revert BatteryRewardsNothingOwed(account);
        _owed[account] = 0;
        emit Withdrawn(account, to, amount);
        token.safeTransfer(to, amount);
    }
}
