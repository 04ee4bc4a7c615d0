"""Identity in the stream: the assignment replica every worker keeps, and the single link writer's step."""
