// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";

/// @title EnergyCertificates
/// @notice Granular certificates of validated generation: one certificate per device (the
///         seller's account) and clock hour, one unit per Wh, transferable in any part,
///         and retired ("claimed") for a named beneficiary and purpose for good.
/// @dev An ERC-1155 multi-token in the spirit of ERC-1888 (Energy Web's Origin): the
///      token id is the certificate, `balanceOf` the active (transferable) Wh of a
///      holder and {claimedBalanceOf} the Wh it retired; retiring burns the active units,
///      so a claimed Wh can never move again.
///
///      The only issuer is fixed at construction: the settlement contract, which deploys
///      this contract itself. It reports every trade it accepts ({recordTrade}) and what
///      became of it ({recordOutcome}: the Wh a validator quorum verified, or none); the
///      Wh of a device-hour accumulate per buyer until no trade of it is open any more.
///      Then the settlement (anyone may ask it to) issues the device-hour's certificate
///      once ({issue}), with exactly the verified Wh, to the buyers who received them
///      (the attributes travel with the energy they paid for). Issuing a device-hour a
///      second time, or with open trades, or for fewer Wh than verified, is refused; once
///      issued, no further trade of that device-hour is accepted. Hence: Wh issued ==
///      Wh verified, one id per device and hour.
///
///      A device-hour is the clock hour (Unix time / 3600) in which a trade's slot
///      starts; the certificate's production interval runs from the earliest start to
///      the latest end of its trades' slots (a slot longer than an hour gives a
///      certificate longer than an hour: the market's granularity is the limit).
///
///      Each certificate owns a range of unit numbers, consecutive over all issuances
///      ({Certificate.firstUnit}, EnergyTag's bundle id range); retirements take them
///      in order, so every claim names the exact units it retired.
contract EnergyCertificates is ERC1155 {
    /// @notice Length of a certificate period.
    uint64 public constant PERIOD_S = 1 hours;
    /// @notice Longest beneficiary name and claim purpose (UTF-8 bytes).
    uint256 public constant MAX_BENEFICIARY_BYTES = 128;
    uint256 public constant MAX_PURPOSE_BYTES = 256;

    /// @notice What a device-hour has gathered so far (one storage slot).
    /// @param validatedWh Wh validators verified for the trades of this device-hour.
    /// @param start Earliest slot start of its trades (Unix seconds).
    /// @param end Latest slot end of its trades; 0: no trade seen yet.
    /// @param openTrades Its trades not yet settled or reclaimed.
    /// @param certificateId Its certificate; 0: not issued.
    struct Period {
        uint64 validatedWh;
        uint64 start;
        uint64 end;
        uint32 openTrades;
        uint32 certificateId;
    }

    /// @notice An issued certificate (its metadata, fixed at issuance, and its claims).
    /// @param device The generating device: the seller's account.
    /// @param start Production interval start (Unix seconds).
    /// @param end Production interval end (Unix seconds).
    /// @param issuedWh Wh issued: the device-hour's verified Wh.
    /// @param claimedWh Wh retired so far (units firstUnit .. firstUnit + claimedWh - 1).
    /// @param firstUnit Number of its first unit; its units run to firstUnit + issuedWh - 1.
    struct Certificate {
        address device;
        uint64 start;
        uint64 end;
        uint64 issuedWh;
        uint64 claimedWh;
        uint64 firstUnit;
    }

    /// @notice One device-hour to issue, and the accounts that received its Wh.
    struct IssueRequest {
        address device;
        uint64 hourStart;
        address[] holders;
    }

    /// @notice The settlement contract: the only account that records deliveries and issues.
    address public immutable issuer;

    /// @dev Keyed by the hour's start (Unix seconds, a multiple of PERIOD_S).
    mapping(address device => mapping(uint64 hourStart => Period)) private _periods;
    mapping(address device => mapping(uint64 hourStart => mapping(address holder => uint64 wh))) private _pending;
    mapping(uint256 id => Certificate) private _certificates;
    mapping(address holder => mapping(uint256 id => uint256 wh)) private _claimed;

    /// @notice Certificates issued; ids run from 1 to this.
    uint32 public certificateCount;
    /// @notice Units (Wh) issued over all certificates: the last unit number.
    uint64 public unitsIssued;
    /// @notice Retirements so far; claim ids run from 1 to this.
    uint256 public claimCount;
    /// @notice Wh the issuer reported verified (issued or waiting for their hour to close).
    uint256 public totalValidatedWh;
    /// @notice Wh retired over all certificates.
    uint256 public totalClaimedWh;

    error EnergyCertificatesZeroIssuer();
    error EnergyCertificatesNotIssuer(address caller);
    /// @notice `hourStart` is not a multiple of {PERIOD_S}.
    error EnergyCertificatesNotAnHour(uint64 hourStart);
    /// @notice The device-hour's certificate exists already.
    error EnergyCertificatesAlreadyIssued(address device, uint64 hourStart, uint256 id);
    /// @notice Trades of the device-hour are still open: its Wh are not final.
    error EnergyCertificatesPeriodOpen(address device, uint64 hourStart, uint32 openTrades);
    /// @notice No Wh were verified for the device-hour.
    error EnergyCertificatesNothingToIssue(address device, uint64 hourStart);
    /// @notice The holders given received fewer Wh than were verified.
    error EnergyCertificatesHoldersIncomplete(address device, uint64 hourStart, uint256 listedWh, uint256 validatedWh);
    /// @notice The issuer reported the outcome of a trade it never recorded.
    error EnergyCertificatesNoOpenTrade(address device, uint64 hourStart);
    error EnergyCertificatesUnknownCertificate(uint256 id);
    error EnergyCertificatesZeroAmount();
    /// @notice The holder's active Wh of the certificate do not cover the claim.
    error EnergyCertificatesInsufficientActive(address holder, uint256 id, uint256 active, uint256 wanted);
    /// @notice The beneficiary or the purpose is empty or too long.
    error EnergyCertificatesBadClaimText(uint256 beneficiaryBytes, uint256 purposeBytes);

    /// @notice Certificate `id` issued: `wh` Wh that `device` generated in [start, end),
    ///         units firstUnit .. firstUnit + wh - 1 (the mints follow as TransferSingle).
    event CertificateIssued(
        uint256 indexed id, address indexed device, uint64 start, uint64 end, uint64 wh, uint64 firstUnit
    );
    /// @notice `holder` retired `wh` Wh of certificate `id` (units firstUnit ..
    ///         firstUnit + wh - 1) for `beneficiary` and `purpose`, for good.
    event CertificateClaimed(
        uint256 indexed claimId,
        uint256 indexed id,
        address indexed holder,
        uint64 wh,
        uint64 firstUnit,
        string beneficiary,
        string purpose
    );

    /// @param settlement The issuer.
    constructor(address settlement) ERC1155("") {
        if (settlement == address(0)) revert EnergyCertificatesZeroIssuer();
        issuer = settlement;
    }

    modifier onlyIssuer() {
        if (msg.sender != issuer) revert EnergyCertificatesNotIssuer(msg.sender);
        _;
    }

    // ---------------------------------------------------------------- issuer

    /// @notice Whether the hour of `slotStart` is certified for `device` (its certificate is final).
    function isCertified(address device, uint64 slotStart) external view returns (bool) {
        return _periods[device][_hourOf(slotStart)].certificateId != 0;
    }

    /// @notice The issuer accepted a trade of `device` for the slot [slotStart, slotEnd).
    /// @dev Refused once the device-hour is issued: its certificate is final.
    function recordTrade(address device, uint64 slotStart, uint64 slotEnd) external onlyIssuer {
        uint64 hourStart = _hourOf(slotStart);
        Period storage period = _periods[device][hourStart];
        uint32 id = period.certificateId;
        if (id != 0) revert EnergyCertificatesAlreadyIssued(device, hourStart, id);
        if (period.end == 0) {
            (period.start, period.end) = (slotStart, slotEnd);
        } else {
            if (slotStart < period.start) period.start = slotStart;
            if (slotEnd > period.end) period.end = slotEnd;
        }
        ++period.openTrades;
    }

    /// @notice A trade of `device` whose slot starts at `slotStart` became final: a quorum
    ///         verified `wh` Wh delivered to `holder` (0 for a reclaimed trade).
    function recordOutcome(address device, uint64 slotStart, address holder, uint64 wh) external onlyIssuer {
        uint64 hourStart = _hourOf(slotStart);
        Period storage period = _periods[device][hourStart];
        if (period.openTrades == 0) revert EnergyCertificatesNoOpenTrade(device, hourStart);
        // Checked just above: openTrades >= 1.
        unchecked {
            --period.openTrades;
        }
        if (wh == 0) return;
        period.validatedWh += wh;
        _pending[device][hourStart][holder] += wh;
        totalValidatedWh += wh;
    }

    /// @notice Issue the certificates of closed device-hours: each with exactly its
    ///         verified Wh, minted to the accounts that received them (`holders` must
    ///         list them all; others and repeats get nothing).
    /// @return ids The new certificates' ids, in the order of `requests`.
    function issue(IssueRequest[] calldata requests) external onlyIssuer returns (uint256[] memory ids) {
        ids = new uint256[](requests.length);
        for (uint256 i; i < requests.length; ++i) {
            ids[i] = _issue(requests[i]);
        }
    }

    // ---------------------------------------------------------------- holders

    /// @notice Retire `wh` of the caller's active Wh of certificate `id` for `beneficiary`
    ///         and `purpose`, irreversibly (ERC-1888's claim).
    /// @return claimId The retirement's number.
    function claim(uint256 id, uint64 wh, string calldata beneficiary, string calldata purpose)
        external
        returns (uint256 claimId)
    {
        return _claim(msg.sender, id, wh, beneficiary, purpose);
    }

    /// @notice {claim} on behalf of `holder`, by the holder or an operator it approved for
    ///         all its tokens (as ERC-1888's safeTransferAndClaimFrom needs approval).
    function claimFrom(address holder, uint256 id, uint64 wh, string calldata beneficiary, string calldata purpose)
        external
        returns (uint256 claimId)
    {
        if (holder != msg.sender && !isApprovedForAll(holder, msg.sender)) {
            revert ERC1155MissingApprovalForAll(msg.sender, holder);
        }
        return _claim(holder, id, wh, beneficiary, purpose);
    }

    // ---------------------------------------------------------------- views

    /// @notice Wh of certificate `id` that `holder` retired (ERC-1888).
    function claimedBalanceOf(address holder, uint256 id) external view returns (uint256) {
        return _claimed[holder][id];
    }

    /// @notice {claimedBalanceOf} for many pairs.
    function claimedBalanceOfBatch(address[] calldata holders, uint256[] calldata ids)
        external
        view
        returns (uint256[] memory claimed)
    {
        if (holders.length != ids.length) revert ERC1155InvalidArrayLength(ids.length, holders.length);
        claimed = new uint256[](holders.length);
        for (uint256 i; i < holders.length; ++i) {
            claimed[i] = _claimed[holders[i]][ids[i]];
        }
    }

    /// @notice Certificate `id` (all zero if not issued).
    function certificate(uint256 id) external view returns (Certificate memory) {
        return _certificates[id];
    }

    /// @notice The device-hours starting at `hourStarts[i]` of `devices[i]`.
    function periods(address[] calldata devices, uint64[] calldata hourStarts)
        external
        view
        returns (Period[] memory found)
    {
        if (devices.length != hourStarts.length) {
            revert ERC1155InvalidArrayLength(devices.length, hourStarts.length);
        }
        found = new Period[](devices.length);
        for (uint256 i; i < devices.length; ++i) {
            found[i] = _periods[devices[i]][_hourOf(hourStarts[i])];
        }
    }

    /// @notice Verified Wh of `device`'s hour at `hourStart` waiting to be issued to `holder`.
    function pendingWh(address device, uint64 hourStart, address holder) external view returns (uint64) {
        return _pending[device][_hourOf(hourStart)][holder];
    }

    // ---------------------------------------------------------------- internals

    function _issue(IssueRequest calldata request) private returns (uint256 id) {
        (address device, uint64 hourStart) = (request.device, request.hourStart);
        if (hourStart % PERIOD_S != 0) revert EnergyCertificatesNotAnHour(hourStart);
        Period storage period = _periods[device][hourStart];
        if (period.certificateId != 0) {
            revert EnergyCertificatesAlreadyIssued(device, hourStart, period.certificateId);
        }
        if (period.openTrades != 0) revert EnergyCertificatesPeriodOpen(device, hourStart, period.openTrades);
        uint64 wh = period.validatedWh;
        if (wh == 0) revert EnergyCertificatesNothingToIssue(device, hourStart);
        uint32 newId = ++certificateCount;
        uint64 firstUnit = unitsIssued + 1;
        unitsIssued += wh;
        period.certificateId = newId;
        _certificates[newId] = Certificate(device, period.start, period.end, wh, 0, firstUnit);
        emit CertificateIssued(newId, device, period.start, period.end, wh, firstUnit);
        uint256 listed = 0;
        uint256[] memory ids = new uint256[](1);
        uint256[] memory values = new uint256[](1);
        ids[0] = newId;
        for (uint256 i; i < request.holders.length; ++i) {
            address holder = request.holders[i];
            uint64 share = _pending[device][hourStart][holder];
            if (share == 0) continue;
            delete _pending[device][hourStart][holder];
            listed += share;
            values[0] = share;
            // Without the ERC-1155 receiver check, as the energy token mints: a buyer's
            // contract that rejects tokens must not block the device-hour's certificate.
            _update(address(0), holder, ids, values);
        }
        if (listed != wh) revert EnergyCertificatesHoldersIncomplete(device, hourStart, listed, wh);
        return newId;
    }

    /// @dev The start of the clock hour holding `time`.
    function _hourOf(uint64 time) private pure returns (uint64) {
        return time - time % PERIOD_S;
    }

    function _claim(address holder, uint256 id, uint64 wh, string calldata beneficiary, string calldata purpose)
        private
        returns (uint256 claimId)
    {
        if (wh == 0) revert EnergyCertificatesZeroAmount();
        uint256 b = bytes(beneficiary).length;
        uint256 p = bytes(purpose).length;
        if (b == 0 || b > MAX_BENEFICIARY_BYTES || p == 0 || p > MAX_PURPOSE_BYTES) {
            revert EnergyCertificatesBadClaimText(b, p);
        }
        Certificate storage cert = _certificates[id];
        if (cert.issuedWh == 0) revert EnergyCertificatesUnknownCertificate(id);
        uint256 active = balanceOf(holder, id);
        if (active < wh) revert EnergyCertificatesInsufficientActive(holder, id, active, wh);
        _burn(holder, id, wh);
        uint64 firstUnit = cert.firstUnit + cert.claimedWh;
        // wh <= active <= issuedWh - claimedWh: the sum stays within issuedWh (a uint64).
        cert.claimedWh += wh;
        _claimed[holder][id] += wh;
        totalClaimedWh += wh;
        claimId = ++claimCount;
        emit CertificateClaimed(claimId, id, holder, wh, firstUnit, beneficiary, purpose);
    }
}
