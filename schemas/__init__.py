"""Event contracts (Avro .avsc files under avro/) and the Confluent-framed codec."""
