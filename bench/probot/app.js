// The Probot app bench/intake.py measures beside tarmac: it does nothing. Probot still verifies
// each delivery's signature, parses it and logs one line, as any Probot app does.
export default () => {};
