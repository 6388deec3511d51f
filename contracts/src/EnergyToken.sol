// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";

/// @title EnergyToken
/// @notice Verified delivered energy: one unit is one Wh; the token id is the start of
///         the delivery slot in Unix seconds.
/// @dev The only minter is fixed at construction (the settlement contract, which deploys
///      this token itself) and has no admin above it: no one can mint energy that a
///      validator quorum did not verify.
contract EnergyToken is ERC1155 {
    /// @notice The settlement contract: the only account that can create tokens.
    address public immutable minter;

    error EnergyTokenNotMinter(address caller);

    /// @param settlement The minter.
    constructor(address settlement) ERC1155("") {
        minter = settlement;
    }

    /// @notice Mint `wh` of the slot starting at `slotStart` to the seller who generated it,
    ///         then pass it to the buyer who paid for it.
    /// @dev Without the ERC-1155 receiver check: settlement must not depend on code at a
    ///      participant's address (a contract buyer that rejected tokens would otherwise
    ///      revert every attestation batch holding one of its trades). Both transfers
    ///      are still logged as TransferSingle events.
    function deliver(address seller, address buyer, uint256 slotStart, uint256 wh) external {
        if (msg.sender != minter) revert EnergyTokenNotMinter(msg.sender);
        uint256[] memory ids = new uint256[](1);
        uint256[] memory values = new uint256[](1);
        (ids[0], values[0]) = (slotStart, wh);
        _update(address(0), seller, ids, values);
        _update(seller, buyer, ids, values);
    }
}
