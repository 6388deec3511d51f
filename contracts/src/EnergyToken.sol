// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title EnergyToken
/// @notice Verified generation: one unit is one Wh delivered; the token id is the slot.
/// @dev Only the settlement contract (DELIVERER_ROLE) creates tokens, and only for
///      energy validators agreed was delivered.
contract EnergyToken is ERC1155, AccessControl {
    /// @notice May mint verified energy and hand it to the buyer.
    bytes32 public constant DELIVERER_ROLE = keccak256("DELIVERER_ROLE");

    /// @param admin Receives the admin role (and grants DELIVERER_ROLE to settlement).
    constructor(address admin) ERC1155("") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Mint `wh` of slot `slot` to the seller who generated it, then pass it to
    ///         the buyer who paid for it.
    /// @dev Without the ERC-1155 receiver check: settlement must not depend on code at a
    ///      participant's address (a contract buyer that rejected tokens would otherwise
    ///      revert every attestation batch holding one of its trades). Both transfers
    ///      are still logged as TransferSingle events.
    function deliver(address seller, address buyer, uint256 slot, uint256 wh) external onlyRole(DELIVERER_ROLE) {
        uint256[] memory ids = new uint256[](1);
        uint256[] memory values = new uint256[](1);
        (ids[0], values[0]) = (slot, wh);
        _update(address(0), seller, ids, values);
        _update(seller, buyer, ids, values);
    }

    /// @inheritdoc ERC1155
    function supportsInterface(bytes4 interfaceId) public view override(ERC1155, AccessControl) returns (bool) {
        return super.supportsInterface(interfaceId);
    }
}
