// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Vm} from "../Vm.sol";
import {PaymentToken} from "../../src/PaymentToken.sol";
import {ValidatorRegistry} from "../../src/ValidatorRegistry.sol";
import {BatteryRewards} from "../../src/BatteryRewards.sol";

/// Drives BatteryRewards through random agreements, signed summaries of random validator
/// subsets, time, registrations and revocations, withdrawals and claims of the
/// participants' credits, reclaims and attacks. Never reverts: valid
/// calls are made only when its model says they succeed; attacks go through try/catch and
/// any that succeeds is recorded as a finding.
contract BatteryRewardsHandler {
    Vm internal constant vm = Vm(0x7109709ECfa91a80626fF3989D68f67F5b1DD12D);
    uint256 internal constant KEYS = 5;

    PaymentToken public immutable payment;
    ValidatorRegistry public immutable registry;
    BatteryRewards public immutable rewards;
    address public immutable admin;
    address internal constant SPONSOR = address(0x5B0);
    address internal constant OWNER = address(0x0A1);
    address internal constant OTHER = address(0x0A2);
    /// Where a participant may withdraw its credit to, besides its own address.
    address internal constant VAULT = address(0x0A3);

    uint256 public ghost_funded;
    uint256 public ghost_released;
    uint256 public ghost_reclaimed;
    /// Credits the participants withdrew or had claimed (tokens that left to them).
    uint256 public ghost_withdrawn;
    /// What the sponsor's reclaims credited it and it withdrew or had claimed.
    uint256 public ghost_sponsorWithdrawn;
    uint256 public ghost_attacksSucceeded;
    uint256 public ghost_releases;
    /// How often each (agreement, period, condition) was released.
    mapping(bytes32 key => uint256 count) public ghost_releaseCount;
    uint256 public ghost_maxReleaseCount;

    constructor(PaymentToken payment_, ValidatorRegistry registry_, BatteryRewards rewards_, address admin_) {
        payment = payment_;
        registry = registry_;
        rewards = rewards_;
        admin = admin_;
    }

    function _bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        return min + (x % (max - min + 1));
    }

    function _key(uint256 k) internal pure returns (uint256) {
        return 0xA001 + k;
    }

    function create(uint256 seed, uint16 share, uint32 periods, uint256 amount) external {
        if (rewards.agreementCount() >= 8) return;
        BatteryRewards.Terms memory t;
        t.batteryId = bytes32(seed);
        t.periodStart = uint64(block.timestamp);
        t.periodSeconds = uint32(_bound(seed, 60, 86_400));
        t.periods = uint32(_bound(periods, 1, 6));
        t.expiry = t.periodStart + uint64(t.periods + 1) * t.periodSeconds + uint64(_bound(seed >> 32, 0, 86_400));
        t.conditions = BatteryRewards.Conditions(1000, 9000, 8000, 500, 0, 400, 1500, 8000, 9000, 3600);
        for (uint256 c; c < 6; ++c) {
            t.amounts[c] = (seed >> (40 + c)) & 1 == 0 ? 0 : _bound(amount >> (c * 20), 1, 1e9);
        }
        t.participants = new address[](2);
        t.participants[0] = OWNER;
        t.participants[1] = OTHER;
        t.sharesBps = new uint16[](2);
        t.sharesBps[0] = uint16(_bound(share, 1, 9999));
        t.sharesBps[1] = 10_000 - t.sharesBps[0];
        uint256 perPeriod;
        for (uint256 c; c < 6; ++c) {
            perPeriod += t.amounts[c];
        }
        if (perPeriod == 0) return;
        vm.prank(admin);
        payment.mint(SPONSOR, perPeriod * t.periods);
        vm.startPrank(SPONSOR);
        payment.approve(address(rewards), perPeriod * t.periods);
        rewards.create(t);
        vm.stopPrank();
        ghost_funded += perPeriod * t.periods;
    }

    function warp(uint256 seconds_) external {
        vm.warp(block.timestamp + _bound(seconds_, 1, 2 days));
    }

    function register(uint256 k) external {
        address v = vm.addr(_key(_bound(k, 0, KEYS - 1)));
        if (registry.epochOf(v) != 0) return;
        vm.prank(admin);
        registry.register(v);
    }

    function revoke(uint256 k) external {
        address v = vm.addr(_key(_bound(k, 0, KEYS - 1)));
        if (registry.epochOf(v) == 0 || registry.count() == 1) return;
        vm.prank(admin);
        registry.revoke(v);
    }

    /// A summary of a period `length` seconds long, chosen by `seed`'s bits.
    function _summary(uint256 seed, uint32 length) internal pure returns (BatteryRewards.Summary memory s) {
        s = BatteryRewards.Summary(2000, 8500, 6500, 400, 150, 300, 900, 9500, 10_000, 300);
        if (seed & 1 != 0) s.socMaxBps = 9500;
        if (seed & 2 != 0) {
            // A cycle deeper than allowed (its range, 1 bps of rounding more), in a range
            // that gives it.
            s.socMinBps = 1000;
            if (s.socMaxBps < 9000) s.socMaxBps = 9000;
        }
        s.maxDodBps = s.socMaxBps - s.socMinBps + (seed & 2 != 0 ? uint16(1) : uint16(0));
        if (seed & 4 != 0) s.maxCRateMilli = 2000;
        if (seed & 8 != 0) s.tempMaxDeciC = 450;
        if (seed & 16 != 0) s.cyclesPerDayMilli = 3000;
        if (seed & 32 != 0) s.sohBps = 0;
        // Telemetry too thin (bit 6) or with too long a gap (bit 7): refused, period open.
        if (seed & 64 != 0) s.coverageBps = 8999;
        if (seed & 128 != 0) s.maxGapSeconds = 3601;
        // As many cycles as the deepest one is at least (a short period's swing is many a day).
        uint256 least = _leastCycles(s.maxDodBps, length);
        if (s.cyclesPerDayMilli < least) s.cyclesPerDayMilli = uint32(least);
        // A summary no telemetry can give (bit 8, its kind from bits 9-11): refused, open.
        if (seed & 256 != 0) {
            uint256 kind = (seed >> 9) % 6;
            if (kind == 0) s.socMinBps = s.socMaxBps + 1;
            if (kind == 1) s.maxDodBps = s.socMaxBps - s.socMinBps + 2;
            if (kind == 2) s.maxDodBps = s.socMaxBps - s.socMinBps - 2; // shallow: meets MAX_DOD
            if (kind == 3) s.tempMinDeciC = s.tempMaxDeciC + 1;
            if (kind == 4) s.sohBps = 10_001;
            if (kind == 5 && least != 0) s.cyclesPerDayMilli = uint32(least - 1);
        }
    }

    /// The fewest milli-cycles per day a deepest cycle of `dodBps` allows (the model of
    /// `checkSummary`'s cycles rule, written out again).
    function _leastCycles(uint16 dodBps, uint32 length) internal pure returns (uint256) {
        if (dodBps <= 1) return 0;
        return ((uint256(dodBps) - 1) * 4320 + length - 1) / length;
    }

    /// The model of `checkSummary`, written out again.
    function _consistent(BatteryRewards.Summary memory s, uint32 length) internal pure returns (bool) {
        return s.socMinBps <= s.socMaxBps && s.socMaxBps <= 10_000
            && s.cyclesPerDayMilli >= _leastCycles(s.maxDodBps, length)
            && uint256(s.maxDodBps) <= uint256(s.socMaxBps) - s.socMinBps + 1
            && uint256(s.maxDodBps) + 1 >= uint256(s.socMaxBps) - s.socMinBps && s.tempMinDeciC <= s.tempMaxDeciC
            && s.sohBps <= 10_000 && s.coverageBps <= 10_000;
    }

    function _covered(BatteryRewards.Summary memory s) internal pure returns (bool) {
        return s.coverageBps >= 9000 && s.maxGapSeconds <= 3600;
    }

    function _sign(uint256 key, uint256 id, uint32 period, BatteryRewards.Summary memory s, uint32 epoch)
        internal
        view
        returns (bytes memory)
    {
        (uint8 v, bytes32 r, bytes32 sig) = vm.sign(key, rewards.summaryHash(id, period, s, epoch));
        return abi.encodePacked(r, sig, v);
    }

    /// Signatures of the registered validators among the keys chosen by `subset`.
    function _signatures(uint256 id, uint32 period, BatteryRewards.Summary memory s, uint256 subset)
        internal
        view
        returns (BatteryRewards.SignedSummary[] memory sigs, uint256 current)
    {
        uint256 n;
        for (uint256 k; k < KEYS; ++k) {
            if ((subset >> k) & 1 != 0) ++n;
        }
        sigs = new BatteryRewards.SignedSummary[](n);
        uint256 i;
        for (uint256 k; k < KEYS; ++k) {
            if ((subset >> k) & 1 == 0) continue;
            address v = vm.addr(_key(k));
            uint32 epoch = registry.epochOf(v);
            if (epoch != 0) ++current;
            sigs[i++] = BatteryRewards.SignedSummary(
                v, epoch == 0 ? 1 : epoch, _sign(_key(k), id, period, s, epoch == 0 ? 1 : epoch)
            );
        }
    }

    function release(uint256 idSeed, uint32 periodSeed, uint256 summarySeed, uint256 subset) external {
        uint256 count = rewards.agreementCount();
        if (count == 0) return;
        uint256 id = _bound(idSeed, 1, count);
        (,, uint64 start, uint32 length, uint32 periods, uint64 expiry) = rewards.agreementOf(id);
        uint32 period = uint32(_bound(periodSeed, 0, periods - 1));
        BatteryRewards.Summary memory s = _summary(summarySeed, length);
        (BatteryRewards.SignedSummary[] memory sigs, uint256 current) =
            _signatures(id, period, s, _bound(subset, 1, 2 ** KEYS - 1));
        bool ok = block.timestamp >= start + uint64(period + 1) * length && block.timestamp <= expiry
            && rewards.periodMask(id, period) == 0 && current >= registry.quorum() && _covered(s)
            && _consistent(s, length);
        uint256 before = owedTotal();
        uint256 tokensBefore = payment.balanceOf(address(rewards));
        try rewards.release(id, period, s, sigs) returns (uint256 amount) {
            if (!ok) ++ghost_attacksSucceeded;
            // Credited exactly, and no token moved (pull payments).
            if (owedTotal() - before != amount) ++ghost_attacksSucceeded;
            if (payment.balanceOf(address(rewards)) != tokensBefore) ++ghost_attacksSucceeded;
            ghost_released += amount;
            ++ghost_releases;
            _count(id, period);
        } catch {
            if (ok) ++ghost_attacksSucceeded; // a valid release refused is a finding too
        }
    }

    function _count(uint256 id, uint32 period) internal {
        uint8 mask = rewards.periodMask(id, period);
        for (uint8 c; c < 6; ++c) {
            if (mask & (1 << c) == 0) continue;
            uint256 times = ++ghost_releaseCount[keccak256(abi.encode(id, period, c))];
            if (times > ghost_maxReleaseCount) ghost_maxReleaseCount = times;
        }
    }

    /// Attack: replay any period's summary as signed by a forged key set.
    function forge(uint256 idSeed, uint32 periodSeed) external {
        uint256 count = rewards.agreementCount();
        if (count == 0) return;
        uint256 id = _bound(idSeed, 1, count);
        (,,,, uint32 periods,) = rewards.agreementOf(id);
        uint32 period = uint32(_bound(periodSeed, 0, periods - 1));
        BatteryRewards.Summary memory s = _summary(0, 86_400);
        BatteryRewards.SignedSummary[] memory sigs = new BatteryRewards.SignedSummary[](KEYS);
        for (uint256 k; k < KEYS; ++k) {
            address v = vm.addr(_key(k));
            sigs[k] = BatteryRewards.SignedSummary(v, registry.epochOf(v), _sign(0xBAD0 + k, id, period, s, 1));
        }
        try rewards.release(id, period, s, sigs) {
            ++ghost_attacksSucceeded;
        } catch {}
    }

    /// What the participants are owed and have not withdrawn.
    function owedTotal() public view returns (uint256) {
        return rewards.owedOf(OWNER) + rewards.owedOf(OTHER);
    }

    /// What the sponsor's reclaims credited it and it has not withdrawn.
    function sponsorOwed() public view returns (uint256) {
        return rewards.owedOf(SPONSOR);
    }

    /// Book a withdrawal of `account`'s credit: the sponsor's is reclaimed money.
    function _bookWithdrawal(address account, uint256 amount) internal {
        if (account == SPONSOR) ghost_sponsorWithdrawn += amount;
        else ghost_withdrawn += amount;
    }

    function _actor(uint256 seed) internal pure returns (address) {
        uint256 k = seed % 4;
        return k == 0 ? OWNER : k == 1 ? OTHER : k == 2 ? SPONSOR : address(0xBAD);
    }

    /// A withdrawal by a participant or the sponsor (its reclaims) (or, an attack, by
    /// whoever is owed nothing: a stranger, the sponsor before a reclaim) to its own
    /// address, the vault, or (attacks) the zero address or the contract itself.
    function withdraw(uint256 actorSeed, uint256 toSeed) external {
        address actor = _actor(actorSeed);
        uint256 k = toSeed % 4;
        address to = k == 0 ? actor : k == 1 ? VAULT : k == 2 ? address(0) : address(rewards);
        uint256 owed = rewards.owedOf(actor);
        bool ok = owed != 0 && to != address(0) && to != address(rewards);
        uint256 before = payment.balanceOf(to);
        vm.prank(actor);
        try rewards.withdraw(to) returns (uint256 amount) {
            if (!ok || amount != owed || rewards.owedOf(actor) != 0) ++ghost_attacksSucceeded;
            if (payment.balanceOf(to) - before != amount) ++ghost_attacksSucceeded;
            _bookWithdrawal(actor, amount);
        } catch {
            if (ok) ++ghost_attacksSucceeded;
        }
    }

    /// Anyone claims an account's credit for it: the tokens go to that account only.
    function claim(uint256 accountSeed, uint256 callerSeed) external {
        address account = _actor(accountSeed);
        uint256 owed = rewards.owedOf(account);
        address caller = _actor(callerSeed);
        uint256 callerBefore = payment.balanceOf(caller);
        uint256 before = payment.balanceOf(account);
        vm.prank(caller);
        try rewards.claim(account) returns (uint256 amount) {
            if (owed == 0 || amount != owed || payment.balanceOf(account) - before != amount) {
                ++ghost_attacksSucceeded;
            }
            if (caller != account && payment.balanceOf(caller) != callerBefore) ++ghost_attacksSucceeded;
            _bookWithdrawal(account, amount);
        } catch {
            if (owed != 0) ++ghost_attacksSucceeded;
        }
    }

    mapping(uint256 id => bool reclaimed) internal _reclaimed;

    /// A reclaim by the sponsor or (an attack) by a participant, before or after expiry.
    function reclaim(uint256 idSeed, bool asSponsor) external {
        uint256 count = rewards.agreementCount();
        if (count == 0) return;
        uint256 id = _bound(idSeed, 1, count);
        (,,,,, uint64 expiry) = rewards.agreementOf(id);
        (uint256 funded, uint256 released,,) = rewards.balancesOf(id);
        bool ok = asSponsor && block.timestamp > expiry && !_reclaimed[id];
        uint256 sponsorBefore = payment.balanceOf(SPONSOR);
        uint256 owedBefore = rewards.owedOf(SPONSOR);
        vm.prank(asSponsor ? SPONSOR : OWNER);
        try rewards.reclaim(id) returns (uint256 amount) {
            if (!ok || amount != funded - released) ++ghost_attacksSucceeded;
            // Pull: the reclaim credits the sponsor, no token moves.
            if (rewards.owedOf(SPONSOR) != owedBefore + amount) ++ghost_attacksSucceeded;
            if (payment.balanceOf(SPONSOR) != sponsorBefore) ++ghost_attacksSucceeded;
            ghost_reclaimed += amount;
            _reclaimed[id] = true;
        } catch {
            if (ok) ++ghost_attacksSucceeded;
        }
    }
}
