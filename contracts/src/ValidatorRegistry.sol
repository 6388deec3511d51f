// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title ValidatorRegistry
/// @notice The current set of validators whose quorum verifies metered delivery.
/// @dev Each registration gets a fresh epoch number, and a validator signs its votes
///      under it: a vote counts only while that registration lasts, so revoking a
///      validator removes all its pending votes at once (and registering it again does
///      not bring them back). The quorum is strictly more than two thirds of the
///      validators registered now: `floor(2n / 3) + 1`.
contract ValidatorRegistry is AccessControl {
    /// @notice Registers and revokes validators.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");

    /// @notice Epoch of the current registration of each validator; 0: not registered.
    mapping(address validator => uint32 epoch) public epochOf;
    /// @notice Validators registered now.
    uint256 public count;
    uint32 private _lastEpoch;

    error ZeroAddress();
    error ValidatorRegistryAlreadyRegistered(address validator);
    error ValidatorRegistryNotRegistered(address validator);

    event ValidatorRegistered(address indexed validator, uint32 epoch);
    event ValidatorRevoked(address indexed validator, uint32 epoch);

    /// @param admin Receives the admin and registrar roles.
    constructor(address admin) {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(REGISTRAR_ROLE, admin);
    }

    /// @notice Add `validator` to the current set under a new epoch.
    function register(address validator) external onlyRole(REGISTRAR_ROLE) {
        if (validator == address(0)) revert ZeroAddress();
        if (epochOf[validator] != 0) revert ValidatorRegistryAlreadyRegistered(validator);
        uint32 epoch = ++_lastEpoch;
        epochOf[validator] = epoch;
        ++count;
        emit ValidatorRegistered(validator, epoch);
    }

    /// @notice Remove `validator`: its votes, cast or pending, no longer count anywhere.
    function revoke(address validator) external onlyRole(REGISTRAR_ROLE) {
        uint32 epoch = epochOf[validator];
        if (epoch == 0) revert ValidatorRegistryNotRegistered(validator);
        epochOf[validator] = 0;
        --count;
        emit ValidatorRevoked(validator, epoch);
    }

    /// @notice Agreeing current validators needed: strictly more than 2/3 of them.
    /// @dev With no validator registered no quorum can be reached.
    function quorum() external view returns (uint256) {
        return count == 0 ? type(uint256).max : count * 2 / 3 + 1;
    }
}
