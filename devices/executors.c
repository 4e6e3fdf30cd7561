/* The executor of each backend. */
#include "executor.h"

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
