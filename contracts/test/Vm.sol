// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// Minimal Foundry cheatcode interface (forge-std is not obtainable offline).
/// Signatures match forge's cheatcodes; forge intercepts calls to VM_ADDRESS.
interface Vm {
    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    function prank(address sender) external;
    function startPrank(address sender) external;
    function stopPrank() external;
    function expectRevert() external;
    function expectRevert(bytes4 revertData) external;
    function expectRevert(bytes calldata revertData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData, address emitter) external;
    function deal(address account, uint256 newBalance) external;
    function warp(uint256 newTimestamp) external;
    function roll(uint256 newHeight) external;
    function assume(bool condition) external pure;
    function label(address account, string calldata newLabel) external;
    function addr(uint256 privateKey) external pure returns (address keyAddr);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function toString(uint256 value) external pure returns (string memory);
    function toString(address value) external pure returns (string memory);
    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory logs);
}

/// Tiny base test: cheatcode handle, invariant targets, assertions that revert with a message.
abstract contract TestBase {
    address internal constant VM_ADDRESS = 0x7109709ECfa91a80626fF3989D68f67F5b1DD12D; // keccak256("hevm cheat code")
    Vm internal constant vm = Vm(VM_ADDRESS);

    address[] private _targetContracts;

    /// forge's invariant runner calls this (same name/selector as forge-std's StdInvariant).
    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }

    function targetContract(address target) internal {
        _targetContracts.push(target);
    }

    function fail(string memory err) internal pure {
        revert(err);
    }

    function assertTrue(bool c, string memory err) internal pure {
        if (!c) revert(string.concat("assertTrue failed: ", err));
    }

    function assertTrue(bool c) internal pure {
        assertTrue(c, "");
    }

    function assertEq(uint256 a, uint256 b, string memory err) internal pure {
        if (a != b) {
            revert(string.concat("assertEq(uint256) failed: ", vm.toString(a), " != ", vm.toString(b), " ", err));
        }
    }

    function assertEq(uint256 a, uint256 b) internal pure {
        assertEq(a, b, "");
    }

    function assertEq(address a, address b, string memory err) internal pure {
        if (a != b) {
            revert(string.concat("assertEq(address) failed: ", vm.toString(a), " != ", vm.toString(b), " ", err));
        }
    }

    function assertEq(address a, address b) internal pure {
        assertEq(a, b, "");
    }

    function assertEq(bytes32 a, bytes32 b, string memory err) internal pure {
        if (a != b) revert(string.concat("assertEq(bytes32) failed ", err));
    }

    function assertEq(bool a, bool b, string memory err) internal pure {
        if (a != b) revert(string.concat("assertEq(bool) failed ", err));
    }

    function assertFalse(bool c, string memory err) internal pure {
        if (c) revert(string.concat("assertFalse failed: ", err));
    }

    function assertLe(uint256 a, uint256 b, string memory err) internal pure {
        if (a > b) {
            revert(string.concat("assertLe(uint256) failed: ", vm.toString(a), " > ", vm.toString(b), " ", err));
        }
    }

    function assertGe(uint256 a, uint256 b, string memory err) internal pure {
        if (a < b) {
            revert(string.concat("assertGe(uint256) failed: ", vm.toString(a), " < ", vm.toString(b), " ", err));
        }
    }

    /// forge-std-style bound (not a cheatcode): maps x into [min, max].
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        uint256 size = max - min + 1;
        return min + (x % size);
    }
}
