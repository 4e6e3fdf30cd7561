/* The table of executors, chosen by name or by a device's backend. */
#include <string.h>

#include "executor.h"
#include "internal.h"

static const struct hs_executor_ops *const executors[] = {
	&hs__executor_sim,
	&hs__executor_cpu,
	&hs__executor_opencl,
};

const struct hs_executor_ops *hs__executor_find(const char *name)
{
	size_t i;

	for (i = 0; i < HS_ARRAY_SIZE(executors); i++)
		if (!strcmp(executors[i]->name, name))
			return executors[i];
	return NULL;
}

const struct hs_executor_ops *hs__executor_for(const hs_device_t *dev)
{
	switch (dev->backend) {
	case HS_BACKEND_CPU:
		return &hs__executor_cpu;
	case HS_BACKEND_OPENCL:
		return &hs__executor_opencl;
	case HS_BACKEND_SIM:
		break;
	}
	return &hs__executor_sim;
}
