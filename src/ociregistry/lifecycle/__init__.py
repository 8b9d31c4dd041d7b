"""Storage lifecycle: rules over what the registry keeps (quotas, ...). No Flask here."""
