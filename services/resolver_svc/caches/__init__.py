"""What the resolver fetches from config_svc on demand and keeps: users'
data, plaintext credentials, verified caller tokens, each dropped when a
watch event says it changed."""
