// Validates Adaptive Cards with Microsoft's `adaptivecards` library, the renderer's own parser.
//
// stdin: a JSON array of cards. stdout: a JSON array with, per card, a list of problems.
// Every event the library reports is a problem except those in NOT_PROBLEMS: it has no
// severity levels, and Hint and Deprecated events describe cards that still render.
// The CommonJS entry of the package fails on Node 20, so load the bundled dist file.
"use strict";

const path = require("node:path");

const bundle =
  process.argv[2] ||
  path.join(__dirname, "..", "node", "node_modules", "adaptivecards", "dist", "adaptivecards.min.js");
const AC = require(bundle);

const NOT_PROBLEMS = new Set([AC.ValidationEvent.Hint, AC.ValidationEvent.Deprecated]);

function describe(event) {
  const phase = AC.ValidationPhase[event.phase];
  const kind = AC.ValidationEvent[event.event];
  return `${phase}/${kind}: ${event.message}`;
}

function problemsOf(json) {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return ["Parse/Other: a card must be a JSON object"];
  }
  if (json.type !== "AdaptiveCard") {
    return ['Parse/MissingCardType: "type" must be "AdaptiveCard"'];
  }
  const context = new AC.SerializationContext(AC.Versions.v1_5);
  const card = new AC.AdaptiveCard();
  try {
    card.parse(json, context);
  } catch (error) {
    return [`Parse/Exception: ${error.message}`];
  }
  const events = [];
  for (let i = 0; i < context.eventCount; i++) {
    events.push(context.getEventAt(i));
  }
  events.push(...card.validateProperties().validationEvents);
  return events.filter((e) => !NOT_PROBLEMS.has(e.event)).map(describe);
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  input += chunk;
});
process.stdin.on("end", () => {
  const cards = JSON.parse(input);
  process.stdout.write(JSON.stringify(cards.map(problemsOf)));
});
