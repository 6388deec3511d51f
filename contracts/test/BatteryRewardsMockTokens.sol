// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// A stablecoin-like token whose issuer blacklists accounts (as USDC and USDT do): it
/// refuses every transfer to or from a blacklisted account.
contract BatteryRewardsBlacklistToken is ERC20 {
    mapping(address account => bool listed) public blacklisted;

    error BlacklistedAccount(address account);

    constructor() ERC20("blacklisting EUR", "bEUR") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setBlacklisted(address account, bool listed) external {
        blacklisted[account] = listed;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (blacklisted[from]) revert BlacklistedAccount(from);
        if (blacklisted[to]) revert BlacklistedAccount(to);
        super._update(from, to, value);
    }
}

/// A fee-on-transfer token: every transfer burns `feeBps` of the amount, so the receiver
/// gets less than was sent.
contract BatteryRewardsFeeToken is ERC20 {
    uint256 public feeBps;

    constructor(uint256 feeBps_) ERC20("fee-taking EUR", "fEUR") {
        feeBps = feeBps_;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setFee(uint256 feeBps_) external {
        feeBps = feeBps_;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0) || feeBps == 0) {
            super._update(from, to, value);
            return;
        }
        uint256 fee = value * feeBps / 10_000;
        super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}
