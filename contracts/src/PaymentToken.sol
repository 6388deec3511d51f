// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title PaymentToken
/// @notice A mintable test currency for local chains: one unit is one micro-EUR.
/// @dev Production would use a real stablecoin; settlement only needs IERC20.
contract PaymentToken is ERC20, AccessControl {
    /// @notice May create new tokens.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /// @param admin Receives the admin and minter roles.
    constructor(address admin) ERC20("gridmatch test EUR", "tEUR") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
    }

    /// @notice Six decimals: amounts are micro-EUR.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Create `amount` tokens for `to`.
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }
}
