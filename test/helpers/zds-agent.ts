// The test istio-cni agent is the demo's (host/demo/zds-agent.ts): one implementation of the agent side of ZDS.
export { ZdsAgent, type AgentPod } from "../../host/demo/zds-agent.js";
