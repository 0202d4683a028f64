package org.wsrelay.interop.eureka;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.cloud.netflix.eureka.server.EnableEurekaServer;

/**
 * The real Spring Cloud Netflix Eureka server, standalone, for wsrelay's integration tests.
 * Port: {@code --server.port=N}. Test intervals are set in {@code application.yml}.
 */
@SpringBootApplication
@EnableEurekaServer
public class EurekaServerApp {
    public static void main(String[] args) {
        SpringApplication.run(EurekaServerApp.class, args);
    }
}
