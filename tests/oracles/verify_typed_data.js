#!/usr/bin/env node
// Recover the signers of qnode attestation bundles with ethers v6, independently of qnode's Python.
//
//   node tests/oracles/verify_typed_data.js < bundles.json
//
// stdin: a JSON array of bundles. stdout: a JSON array, one entry per bundle:
// {"signer", "coSigners", "digest"} as ethers computes them, or {"error"} if ethers refuses it.
// ethers comes from hardhat-local/node_modules (or $QNODE_NODE_MODULES).
"use strict";

const path = require("path");
const fs = require("fs");

const nodeModules =
  process.env.QNODE_NODE_MODULES || path.join(__dirname, "..", "..", "hardhat-local", "node_modules");
const { verifyTypedData, TypedDataEncoder } = require(path.join(nodeModules, "ethers"));

function check(bundle) {
  try {
    const types = { ...bundle.types };
    delete types.EIP712Domain; // ethers derives the domain type from the domain object
    const signer = verifyTypedData(bundle.domain, types, bundle.message, bundle.signature);
    const coSigners = (bundle.coSignatures || []).map((co) =>
      verifyTypedData(bundle.domain, types, bundle.message, co.signature),
    );
    const digest = TypedDataEncoder.hash(bundle.domain, types, bundle.message);
    return { signer, coSigners, digest };
  } catch (error) {
    return { error: String(error && error.shortMessage ? error.shortMessage : error) };
  }
}

const bundles = JSON.parse(fs.readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(bundles.map(check)) + "\n");
