"""Process control: SPC charts, capability, run rules, and the actions they trigger."""
