/* The table of policies, chosen by name. */
#include <string.h>

#include "internal.h"
#include "policy.h"

extern const struct hs_policy_ops hs__policy_fifo;
extern const struct hs_policy_ops hs__policy_rr;
extern const struct hs_policy_ops hs__policy_eft;
extern const struct hs_policy_ops hs__policy_tpw;
extern const struct hs_policy_ops hs__policy_lp;

const struct hs_policy_ops *const hs__policies[] = {
	&hs__policy_fifo, &hs__policy_rr, &hs__policy_eft,
	&hs__policy_tpw,  &hs__policy_lp, NULL,
};

const struct hs_policy_ops *hs__policy_find(const char *name)
{
	size_t i;

	for (i = 0; hs__policies[i]; i++)
		if (!strcmp(hs__policies[i]->name, name))
			return hs__policies[i];
	return NULL;
}

const char *const *hs_policy_names(void)
{
	static const char *names[16];
	size_t i;

	for (i = 0; hs__policies[i] && i + 1 < HS_ARRAY_SIZE(names); i++)
		names[i] = hs__policies[i]->name;
	names[i] = NULL;
	return names;
}
