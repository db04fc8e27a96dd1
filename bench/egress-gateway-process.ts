import { createEgressGateway, type EgressGateway } from '../src/egress/gateway/egress-gateway.js';
import type { HostRules } from '../src/egress/rules/host-rules.js';

// The gateway side of bench/egress.ts, in a process of its own so its CPU and memory are
// its own: `node egress-gateway-process.js COUNT RULES_JSON TOKEN` starts COUNT gateways
// on loopback TCP, prints their ports as one JSON line, and closes them when stdin ends.
const [countArg, rulesArg, token] = process.argv.slice(2);
const rules = JSON.parse(rulesArg ?? '{}') as HostRules;
const gateways: EgressGateway[] = [];
const ports: number[] = [];
for (let i = 0; i < Number(countArg ?? 1); i++) {
  const gateway = createEgressGateway({
    rules,
    token: token ?? '',
    tcp: { port: 0 },
    cell: `bench-${i}`,
    run: 'bench',
  });
  const address = await gateway.listen();
  gateways.push(gateway);
  ports.push(address.tcp?.port ?? 0);
}
process.stdout.write(`${JSON.stringify({ ports })}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  void Promise.all(gateways.map((g) => g.close())).then(() => process.exit(0));
});
