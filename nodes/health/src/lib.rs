//! health node: CPU, memory, temperatures, node liveness and decision-latency budget alarms (being built).
