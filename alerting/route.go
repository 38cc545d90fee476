package alerting

// Owners returns the roles that own an alert with the given labels, in
// registry order, and whether any role does; an alert no role owns belongs
// to the default role. Validate must have run.
func (c *Config) Owners(get func(name string) string) (roles []string, owned bool) {
	for i := range c.Roles {
		r := &c.Roles[i]
		if len(r.matchers) > 0 && matchAll(r.matchers, get) {
			roles = append(roles, r.Name)
		}
	}
	if len(roles) == 0 {
		return []string{c.DefaultRole}, false
	}
	return roles, true
}

// Receivers returns the names of the Alertmanager receivers an alert that
// already carries its role label reaches through the generated
// configuration: escalation targets first, then the role's own receiver, as
// `amtool config routes test` lists them. An alert without a known role
// reaches the default role's receiver (the root route).
func (c *Config) Receivers(get func(name string) string) []string {
	r := c.role(get(RoleLabel))
	if r == nil {
		return []string{c.DefaultRole}
	}
	var out []string
	for _, e := range r.Escalate {
		if matchAll(e.matchers, get) {
			out = append(out, e.To)
		}
	}
	return append(out, r.Name)
}

// PossibleOwners returns the roles that may own alerts of a rule with these
// static labels: those none of whose matchers contradicts a label the rule
// sets. Labels the rule does not set come from the series at run time and
// are assumed to fit. `leitstand check` warns about rules for which this is
// empty (only the default role would get their alerts).
func (c *Config) PossibleOwners(static map[string]string) []string {
	var out []string
	for i := range c.Roles {
		r := &c.Roles[i]
		if len(r.matchers) == 0 {
			continue
		}
		possible := true
		for _, m := range r.matchers {
			if v, ok := static[m.Name]; ok && !m.Matches(v) {
				possible = false
				break
			}
		}
		if possible {
			out = append(out, r.Name)
		}
	}
	return out
}
