// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {TestBase} from "./Vm.sol";
import {PaymentToken} from "../src/PaymentToken.sol";
import {ValidatorRegistry} from "../src/ValidatorRegistry.sol";
import {BatteryRewards} from "../src/BatteryRewards.sol";
import {BatteryRewardsHandler} from "./handlers/BatteryRewardsHandler.sol";

/// Invariants of battery reward agreements under a random campaign of the handler.
/// The full profile runs the foundry.toml budget (256 x 100); the full campaign asked of
/// it (>= 10,000 runs) is set inline below for the default profile.
contract BatteryRewardsInvariantTest is TestBase {
    PaymentToken internal payment;
    ValidatorRegistry internal registry;
    BatteryRewards internal rewards;
    BatteryRewardsHandler internal handler;

    function setUp() public {
        vm.warp(1_767_225_600);
        payment = new PaymentToken(address(this));
        registry = new ValidatorRegistry(address(this));
        rewards = new BatteryRewards(payment, registry);
        handler = new BatteryRewardsHandler(payment, registry, rewards, address(this));
        payment.grantRole(payment.MINTER_ROLE(), address(handler));
        registry.grantRole(registry.REGISTRAR_ROLE(), address(handler));
        for (uint256 k; k < 3; ++k) {
            registry.register(vm.addr(0xA001 + k));
        }
        targetContract(address(handler));
    }

    /// funded == released + held + reclaimed (released: credited to the participants,
    /// reclaimed: credited to the sponsor); released == owed + withdrawn and reclaimed ==
    /// the sponsor's owed + withdrawn; the contract owns exactly held + both credits, and
    /// the participants, the sponsor and the vault they withdraw to hold exactly what was
    /// withdrawn (the sponsor's mints all went into funding).
    /// forge-config: default.invariant.runs = 10000
    /// forge-config: default.invariant.depth = 25
    /// forge-config: ci.invariant.runs = 128
    /// forge-config: ci.invariant.depth = 25
    function invariant_Conservation() public view {
        uint256 owned = payment.balanceOf(address(rewards));
        uint256 owed = handler.owedTotal();
        uint256 funded;
        uint256 released;
        uint256 heldSum;
        uint256 reclaimed;
        for (uint256 id = 1; id <= rewards.agreementCount(); ++id) {
            (uint256 f, uint256 r, uint256 h, uint256 c) = rewards.balancesOf(id);
            assertEq(f, r + h + c, "per agreement");
            funded += f;
            released += r;
            heldSum += h;
            reclaimed += c;
        }
        assertEq(funded, handler.ghost_funded(), "funded");
        assertEq(released, handler.ghost_released(), "released");
        assertEq(reclaimed, handler.ghost_reclaimed(), "reclaimed");
        assertEq(funded, released + heldSum + reclaimed, "funded split");
        uint256 sponsorOwed = handler.sponsorOwed();
        assertEq(owned, heldSum + owed + sponsorOwed, "the contract owns held + owed");
        assertEq(released, owed + handler.ghost_withdrawn(), "released == owed + withdrawn");
        assertEq(reclaimed, sponsorOwed + handler.ghost_sponsorWithdrawn(), "reclaimed == owed + withdrawn");
        uint256 out = payment.balanceOf(address(0x0A1)) + payment.balanceOf(address(0x0A2))
            + payment.balanceOf(address(0x0A3)) + payment.balanceOf(address(0x5B0));
        assertEq(out, handler.ghost_withdrawn() + handler.ghost_sponsorWithdrawn(), "withdrawn == what they hold");
    }

    /// Never a second release for the same period and condition; no attack succeeds.
    /// forge-config: default.invariant.runs = 10000
    /// forge-config: default.invariant.depth = 25
    /// forge-config: ci.invariant.runs = 128
    /// forge-config: ci.invariant.depth = 25
    function invariant_OnceAndNoAttack() public view {
        assertLe(handler.ghost_maxReleaseCount(), 1, "a condition released twice");
        assertEq(handler.ghost_attacksSucceeded(), 0, "an attack or a wrong refusal");
    }
}
