package org.wsrelay.interop.ws;

import com.netflix.appinfo.ApplicationInfoManager;
import com.netflix.appinfo.InstanceInfo.InstanceStatus;

import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestParam;
import org.springframework.web.bind.annotation.RestController;

/**
 * The instance's own status, as a health check would set it: {@code POST
 * /discoverableclient/status?value=DOWN} sets it in the local {@link ApplicationInfoManager};
 * the Eureka client then registers again with that status (no server-side override, unlike
 * Spring Cloud's {@code serviceregistry} actuator endpoint, which sends
 * {@code PUT apps/{APP}/{id}/status}).
 */
@RestController
class StatusController {
    private final ApplicationInfoManager manager;

    StatusController(ApplicationInfoManager manager) {
        this.manager = manager;
    }

    @PostMapping("/discoverableclient/status")
    String set(@RequestParam("value") String value) {
        manager.setInstanceStatus(InstanceStatus.toEnum(value));
        return manager.getInfo().getStatus().name();
    }

    @GetMapping("/discoverableclient/status")
    String get() {
        return manager.getInfo().getStatus().name();
    }
}
