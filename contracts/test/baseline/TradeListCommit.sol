// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Settlement} from "../../src/Settlement.sol";

/// The alternative to committing a Merkle root: store every trade of a round on chain
/// and lock per trade. Used only by benchmarks/bench_settlement.py to measure what the
/// Merkle commit saves; not part of the settlement system.
contract TradeListCommit {
    mapping(uint64 roundId => Settlement.Trade[]) public trades;
    mapping(address buyer => uint256) public lockedBalance;

    function commitTrades(uint64 roundId, Settlement.Trade[] calldata roundTrades) external {
        Settlement.Trade[] storage stored = trades[roundId];
        for (uint256 i; i < roundTrades.length; ++i) {
            Settlement.Trade calldata t = roundTrades[i];
            stored.push(t);
            lockedBalance[
                    t.buyer
                ] += (uint256(t.quantityWh) * (uint256(t.priceMicroEurPerKwh) + t.feeMicroEurPerKwh) + 999) / 1000;
        }
    }
}
