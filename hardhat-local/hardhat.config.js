// Hardhat 2 configuration for the local qnode consortium chain.
//
// LOCAL_CHAIN_ID = 4717  -- the fixed chainId of the local consortium chain
// (node/chain/localnode.py and the node settings expect it; keep them in step).
//
// Everything here works offline:
//   * `npx hardhat compile` uses the pinned solc-js from node_modules/solc (no compiler download);
//   * `npx hardhat node` serves the in-memory EDR chain; start it through scripts/chain, which keeps
//     its PID and binds loopback only.
//
// Mining is chosen by the environment of the process that starts the node:
//   QNODE_MINING unset or "auto" -> automine (one block per transaction)
//   QNODE_MINING="interval"      -> automine off, a block every QNODE_MINING_INTERVAL_MS (default 1000)
//   QNODE_MINING="manual"        -> automine off, no interval (blocks only on evm_mine)
"use strict";

const path = require("node:path");
const { subtask } = require("hardhat/config");
const { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } = require("hardhat/builtin-tasks/task-names");

const REPO_ROOT = path.resolve(__dirname, "..");
const LOCAL_CHAIN_ID = 4717;
const SOLC_VERSION = "0.8.30";
const DEFAULT_MNEMONIC = "test test test test test test test test test test test junk";
const ACCOUNT_COUNT = 20;
const ACCOUNT_BALANCE_WEI = (10_000n * 10n ** 18n).toString(); // 10000 ETH each

function miningConfig(env) {
  const mode = (env.QNODE_MINING ?? "").trim().toLowerCase() || "auto";
  if (mode === "auto") {
    return { auto: true, interval: 0 };
  }
  if (mode === "manual") {
    return { auto: false, interval: 0 };
  }
  if (mode === "interval") {
    const raw = (env.QNODE_MINING_INTERVAL_MS ?? "").trim() || "1000";
    if (!/^[0-9]+$/.test(raw) || Number(raw) <= 0) {
      throw new Error(
        `QNODE_MINING_INTERVAL_MS must be a positive integer of milliseconds, got ${JSON.stringify(raw)}`,
      );
    }
    return { auto: false, interval: Number(raw) };
  }
  throw new Error(
    `QNODE_MINING must be one of auto, interval, manual; got ${JSON.stringify(env.QNODE_MINING)}`,
  );
}

// Hardhat 2 insists that sources live inside `paths.root`, and it resolves npm imports
// (`@openzeppelin/contracts/...`) by walking up from that root looking for node_modules. Our sources
// are ../contracts (outside this directory) while the npm packages are here, so the root is the repo
// and npm lookups get this directory's node_modules as a last-resort search path. The patch only adds
// a fallback to the `resolve` package Hardhat itself uses; a normal walk-up still wins.
function addNodeModulesFallback(nodeModulesDir) {
  const hardhatDir = path.dirname(require.resolve("hardhat/package.json"));
  const resolvePkg = require(require.resolve("resolve", { paths: [hardhatDir] }));
  if (resolvePkg.qnodeFallbackPaths !== undefined) {
    return;
  }
  const originalSync = resolvePkg.sync;
  resolvePkg.qnodeFallbackPaths = [nodeModulesDir];
  resolvePkg.sync = function syncWithFallback(id, opts) {
    const options = opts ?? {};
    if (typeof options.paths === "function") {
      return originalSync.call(this, id, options);
    }
    const paths = [...(options.paths ?? []), ...resolvePkg.qnodeFallbackPaths];
    return originalSync.call(this, id, { ...options, paths });
  };
}

addNodeModulesFallback(path.join(__dirname, "node_modules"));

// Use the solc-js pinned in package.json instead of downloading a compiler.
subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args) => {
  if (args.solcVersion !== SOLC_VERSION) {
    throw new Error(
      `only solc ${SOLC_VERSION} (local solc-js) is available offline; ${args.solcVersion} was requested`,
    );
  }
  const solc = require("solc");
  const compilerPath = require.resolve("solc/soljson.js");
  return {
    version: SOLC_VERSION,
    longVersion: solc.version(),
    compilerPath,
    isSolcJs: true,
  };
});

/** @type {import("hardhat/config").HardhatUserConfig} */
module.exports = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
      // As scripts/compile_contracts.py builds the committed artifacts in contracts/build: no
      // metadata hash in the bytecode, so both toolchains emit identical bytecode.
      metadata: { bytecodeHash: "none" },
    },
  },
  paths: {
    root: REPO_ROOT,
    sources: path.join(REPO_ROOT, "contracts"),
    artifacts: path.join(__dirname, "artifacts"),
    cache: path.join(__dirname, "cache"),
    tests: path.join(__dirname, "test"),
  },
  networks: {
    hardhat: {
      chainId: LOCAL_CHAIN_ID,
      hardfork: "cancun",
      accounts: {
        mnemonic: DEFAULT_MNEMONIC,
        count: ACCOUNT_COUNT,
        accountsBalance: ACCOUNT_BALANCE_WEI,
      },
      mining: miningConfig(process.env),
      // Behave like the production clients (Besu, GoQuorum): a transaction that reverts or runs out
      // of gas is still accepted and mined with status 0, instead of Hardhat's default of answering
      // eth_sendRawTransaction with an error. Reverting eth_call/eth_estimateGas still answer with
      // a JSON-RPC error carrying the revert data (throwOnCallFailures stays true).
      throwOnTransactionFailures: false,
      throwOnCallFailures: true,
    },
  },
};
