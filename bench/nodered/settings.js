// Node-RED settings for `campusguard-sim bench nodered`: the harness sets the BENCH_* variables
// (free ports, a private user dir, the flow file). No editor and no admin API: the flow runs as is.
const path = require("path");

module.exports = {
    uiHost: "127.0.0.1",
    uiPort: Number(process.env.BENCH_NODERED_PORT || 1880),
    userDir: process.env.BENCH_NODERED_USERDIR || path.join(__dirname, ".user"),
    // flows.json (one write per message) or flows-batch.json (join + batch node).
    flowFile: path.join(__dirname, process.env.BENCH_NODERED_FLOW || "flows.json"),
    credentialSecret: false,
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    logging: { console: { level: "info", metrics: false, audit: false } },
};
